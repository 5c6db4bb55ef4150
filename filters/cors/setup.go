package cors

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "cors"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// AllowOrigins lists the origins allowed to read responses: exact origins
	// (https://app.example), one-label wildcards (https://*.example.com), or "*" alone.
	AllowOrigins []string `mapstructure:"allow_origins"`
	// AllowMethods are answered to preflights; "*" (without credentials) allows any.
	AllowMethods []string `mapstructure:"allow_methods"`
	// AllowHeaders are the request headers a page may send; "*" echoes those a preflight asks for.
	AllowHeaders []string `mapstructure:"allow_headers"`
	// ExposeHeaders are the response headers a page may read beyond the safelisted ones.
	ExposeHeaders []string `mapstructure:"expose_headers"`
	// AllowCredentials lets pages send cookies and HTTP auth and read the answer.
	AllowCredentials bool `mapstructure:"allow_credentials"`
	// MaxAge is how long a browser may cache a preflight's answer, in whole seconds.
	MaxAge time.Duration `mapstructure:"max_age"`
}

// defaultMethods are answered when allow_methods is not given: the methods a JSON API uses.
var defaultMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

// maxOrigin bounds the Origin values compared: a host name has at most 253 bytes; with a
// scheme and a port an origin is far shorter than this. A longer one matches nothing.
const maxOrigin = 320

// New is the filter's factory: it checks every origin and list and precomputes each header
// value, so a request only compares bytes and copies precomputed values.
func New(_ filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{exact: map[string]struct{}{}, credentials: cfg.AllowCredentials}
	if len(cfg.AllowOrigins) == 0 {
		return nil, fmt.Errorf("allow_origins is required (exact origins such as https://app.example, patterns such as https://*.example.com, or \"*\")")
	}
	for i, o := range cfg.AllowOrigins {
		if o == "*" {
			if len(cfg.AllowOrigins) > 1 {
				return nil, fmt.Errorf("allow_origins: \"*\" allows every origin and must be the only entry")
			}
			if cfg.AllowCredentials {
				return nil, fmt.Errorf("allow_origins: \"*\" cannot be used with allow_credentials: browsers refuse credentialed answers for any origin; list the origins")
			}
			f.anyOrigin = true
			continue
		}
		exact, pat, err := parseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("allow_origins[%d]: %w", i, err)
		}
		if pat != nil {
			for _, p := range f.patterns {
				if p == *pat {
					return nil, fmt.Errorf("allow_origins[%d]: %q given twice", i, o)
				}
			}
			f.patterns = append(f.patterns, *pat)
			continue
		}
		if _, dup := f.exact[exact]; dup {
			return nil, fmt.Errorf("allow_origins[%d]: %q given twice", i, o)
		}
		f.exact[exact] = struct{}{}
	}

	methods := cfg.AllowMethods
	if len(methods) == 0 {
		methods = defaultMethods
	}
	v, err := list("allow_methods", methods, cfg.AllowCredentials, true)
	if err != nil {
		return nil, err
	}
	f.methods = []byte(v)
	if len(cfg.AllowHeaders) == 1 && cfg.AllowHeaders[0] == "*" {
		// A literal "*" is no wildcard for credentialed requests and never covers
		// Authorization, so the gateway answers with the very headers the preflight asks for.
		f.reflectHeaders = true
	} else if len(cfg.AllowHeaders) > 0 {
		v, err := list("allow_headers", cfg.AllowHeaders, false, false)
		if err != nil {
			return nil, err
		}
		f.headers = []byte(v)
	}
	if len(cfg.ExposeHeaders) > 0 {
		v, err := list("expose_headers", cfg.ExposeHeaders, cfg.AllowCredentials, false)
		if err != nil {
			return nil, err
		}
		f.expose = []byte(v)
	}
	switch d := cfg.MaxAge; {
	case d < 0:
		return nil, fmt.Errorf("max_age %s is negative", d)
	case d%time.Second != 0:
		return nil, fmt.Errorf("max_age %s is not a whole number of seconds (the header counts seconds)", d)
	case d > 0:
		f.maxAge = []byte(strconv.FormatInt(int64(d/time.Second), 10))
	}
	if f.anyOrigin {
		f.varyPreflight = []byte("Access-Control-Request-Method, Access-Control-Request-Headers")
	} else {
		f.varyPreflight = []byte("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	}
	return f, nil
}

// list validates a method or header name list and joins it into one header value. "*" is a
// wildcard only for requests without credentials, so with credentials it is refused rather than
// sent and silently ignored by browsers.
func list(key string, items []string, credentials, upper bool) (string, error) {
	seen := map[string]bool{}
	out := make([]string, 0, len(items))
	for i, s := range items {
		if s == "*" {
			if len(items) > 1 {
				return "", fmt.Errorf("%s: \"*\" must be the only entry", key)
			}
			if credentials {
				return "", fmt.Errorf("%s: \"*\" is not a wildcard for credentialed requests (allow_credentials); list the names", key)
			}
			return "*", nil
		}
		canon, err := httpcheck.Name(s)
		if err != nil {
			return "", fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		if upper {
			s = strings.ToUpper(s)
			canon = s
		}
		if seen[canon] {
			return "", fmt.Errorf("%s[%d]: %q given twice", key, i, s)
		}
		seen[canon] = true
		out = append(out, s)
	}
	return strings.Join(out, ", "), nil
}

// pattern is a one-label wildcard origin: scheme://*.suffix[:port] becomes prefix "scheme://"
// and suffix ".suffix[:port]".
type pattern struct{ prefix, suffix string }

// parseOrigin checks an origin as written in the config and returns its normal form (scheme and
// host lower-cased, the scheme's default port dropped, as browsers serialise origins), or the
// pattern for a wildcard one.
func parseOrigin(s string) (string, *pattern, error) {
	if s == "null" {
		// Sandboxed iframes, data: URLs and local files all send "null": any page can make its
		// requests carry it, so allowing it would allow every site.
		return "", nil, fmt.Errorf(`"null" cannot be allowed: any page can send Origin: null from a sandboxed iframe; use "*" if every site may read the answers`)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return "", nil, fmt.Errorf("%q is not an origin (want scheme://host[:port], as in https://app.example)", s)
	}
	scheme = strings.ToLower(scheme)
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		if !(c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", nil, fmt.Errorf("%q: invalid scheme", s)
		}
	}
	if i := strings.IndexAny(rest, "/?#@"); i >= 0 {
		return "", nil, fmt.Errorf("%q: an origin has no path, query, fragment or user; write %s://%s", s, scheme, rest[:i])
	}
	rest = strings.ToLower(rest)
	if strings.HasPrefix(rest, "*.[") {
		return "", nil, fmt.Errorf("%q: a wildcard cannot precede an IP literal", s)
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", nil, fmt.Errorf("%q: unterminated IPv6 literal", s)
		}
		host, port = rest[:end+1], rest[end+1:]
		if strings.Trim(host[1:end], "0123456789abcdef:.") != "" || end == 1 {
			return "", nil, fmt.Errorf("%q: malformed IPv6 literal", s)
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i:]
	}
	if port != "" {
		p, err := strconv.Atoi(strings.TrimPrefix(port, ":"))
		if !strings.HasPrefix(port, ":") || err != nil || p < 1 || p > 65535 || port[1] == '0' || port[1] == '+' {
			return "", nil, fmt.Errorf("%q: invalid port", s)
		}
		if scheme == "http" && p == 80 || scheme == "https" && p == 443 {
			port = "" // browsers never send the default port
		}
	}
	wild := false
	if h, ok := strings.CutPrefix(host, "*."); ok {
		wild, host = true, h
	}
	if !strings.HasPrefix(host, "[") {
		if host == "" || len(host) > 253 {
			return "", nil, fmt.Errorf("%q: invalid host", s)
		}
		for _, label := range strings.Split(host, ".") {
			if !isLabel(label) {
				if strings.Contains(label, "*") {
					return "", nil, fmt.Errorf("%q: \"*\" is allowed only as the whole first label, as in https://*.example.com", s)
				}
				return "", nil, fmt.Errorf("%q: invalid host", s)
			}
		}
	} else if wild {
		return "", nil, fmt.Errorf("%q: a wildcard cannot precede an IP literal", s)
	}
	if wild {
		return "", &pattern{prefix: scheme + "://", suffix: "." + host + port}, nil
	}
	return scheme + "://" + host + port, nil, nil
}

// isLabel reports whether s is one DNS label: 1 to 63 letters, digits and hyphens (lower case
// by now). Underscores are refused: browsers do not put them in origins they send.
func isLabel[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
