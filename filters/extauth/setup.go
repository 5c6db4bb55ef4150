package extauth

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "extauth"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// URL is the auth service's endpoint, http or https.
	URL string `mapstructure:"url"`
	// Method is GET or POST (default GET, POST with forward_body).
	Method string `mapstructure:"method"`
	// Timeout bounds one call, connecting and waiting for a connection included.
	Timeout time.Duration `mapstructure:"timeout"`
	// ForwardHeaders are the request headers sent to the auth service.
	ForwardHeaders []string `mapstructure:"forward_headers"`
	// ForwardBody sends the request body too, up to MaxBytes.
	ForwardBody *BodyConfig `mapstructure:"forward_body"`
	// UpstreamHeaders are copied from an allowing answer to the upstream request; the client's
	// own headers of these names are always removed.
	UpstreamHeaders []string `mapstructure:"upstream_headers"`
	// ClientHeaders are copied from a denying answer to the client.
	ClientHeaders []string `mapstructure:"client_headers"`
	// Fail is what happens without a decision (unreachable, timeout, bad answer): closed or open.
	Fail string `mapstructure:"fail"`
	// MaxResponseBytes caps the auth service's answer body.
	MaxResponseBytes config.Size `mapstructure:"max_response_bytes"`
	// MaxConns caps the connections to the auth service.
	MaxConns int `mapstructure:"max_conns"`
	// Cache keeps allow decisions for a while.
	Cache *CacheConfig `mapstructure:"cache"`
}

// BodyConfig is forward_body.
type BodyConfig struct {
	MaxBytes config.Size `mapstructure:"max_bytes"`
}

// CacheConfig is cache.
type CacheConfig struct {
	// TTL is how long an allow decision is reused.
	TTL time.Duration `mapstructure:"ttl"`
	// Key names the credential: header:<name> or cookie:<name>.
	Key string `mapstructure:"key"`
	// Scope is request (the credential with method, host and path) or credential (alone).
	Scope string `mapstructure:"scope"`
	// MaxEntries bounds the cache.
	MaxEntries int `mapstructure:"max_entries"`
}

// Defaults.
const (
	defaultTimeout     = time.Second
	defaultMaxResponse = 64 << 10
	defaultMaxConns    = 128
	defaultTTL         = 30 * time.Second
	defaultMaxEntries  = 10000
	defaultBodyBytes   = 8 << 10
)

var (
	defaultForward = []string{"Authorization", "Cookie"}
	defaultClient  = []string{"WWW-Authenticate", "Location", "Set-Cookie"}
)

// reserved are request headers the filter writes itself on the call to the auth service.
var reserved = map[string]bool{
	"Host": true, "X-Forwarded-Method": true, "X-Forwarded-Uri": true, "X-Forwarded-Host": true,
	"X-Forwarded-Proto": true, "Content-Type": true,
}

// New is the filter's factory: it validates the config and builds the HTTP client to the auth
// service, so a request only copies headers and makes the call.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{decisions: telemetry.NewAuthDecisions(env.Route, env.Filter), log: env.Log, bodyMax: -1}

	if cfg.URL == "" {
		return nil, fmt.Errorf("url is required (http://host:port/path of the auth service)")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// Not quoted: a URL may carry a password.
		return nil, fmt.Errorf("url is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("url: scheme must be http or https")
	case u.User != nil:
		return nil, fmt.Errorf("url must not carry a user or password (the gateway would send it in clear in every log)")
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("url has no host")
	case u.Fragment != "" || strings.Contains(cfg.URL, "#"):
		return nil, fmt.Errorf("url must not have a fragment")
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	f.url = u.String()

	f.timeout = cfg.Timeout
	if f.timeout == 0 {
		f.timeout = defaultTimeout
	}
	if f.timeout < 0 {
		return nil, fmt.Errorf("timeout %s is negative", cfg.Timeout)
	}

	method := strings.ToUpper(cfg.Method)
	if cfg.ForwardBody != nil {
		f.bodyMax = int(cfg.ForwardBody.MaxBytes)
		if f.bodyMax == 0 {
			f.bodyMax = defaultBodyBytes
		}
		if f.bodyMax < 0 {
			return nil, fmt.Errorf("forward_body.max_bytes is negative")
		}
		if method == "" {
			method = "POST"
		}
	}
	switch method {
	case "":
		method = "GET"
	case "GET", "POST":
	default:
		return nil, fmt.Errorf("method %q: want GET or POST", cfg.Method)
	}
	if method == "GET" && f.bodyMax >= 0 {
		return nil, fmt.Errorf("forward_body needs method POST (a GET carries no body)")
	}
	f.method = []byte(method)

	fwd := cfg.ForwardHeaders
	if fwd == nil {
		fwd = defaultForward
	}
	if f.forward, err = names("forward_headers", fwd, reserved); err != nil {
		return nil, err
	}
	if f.upstream, err = names("upstream_headers", cfg.UpstreamHeaders, map[string]bool{"Host": true}); err != nil {
		return nil, err
	}
	ch := cfg.ClientHeaders
	if ch == nil {
		ch = defaultClient
	}
	if f.client, err = names("client_headers", ch, map[string]bool{"Content-Type": true}); err != nil {
		return nil, err
	}

	switch cfg.Fail {
	case "", "closed":
	case "open":
		f.failOpen = true
	default:
		return nil, fmt.Errorf("fail %q: want closed or open", cfg.Fail)
	}

	maxResp := int(cfg.MaxResponseBytes)
	switch {
	case maxResp < 0:
		return nil, fmt.Errorf("max_response_bytes is negative")
	case maxResp == 0:
		maxResp = defaultMaxResponse
	}
	maxConns := cfg.MaxConns
	switch {
	case maxConns < 0:
		return nil, fmt.Errorf("max_conns is negative")
	case maxConns == 0:
		maxConns = defaultMaxConns
	}

	if cfg.Cache != nil {
		c := cfg.Cache
		ttl := c.TTL
		if ttl == 0 {
			ttl = defaultTTL
		}
		if ttl < 0 {
			return nil, fmt.Errorf("cache.ttl %s is negative", c.TTL)
		}
		n := c.MaxEntries
		if n == 0 {
			n = defaultMaxEntries
		}
		if n < 0 {
			return nil, fmt.Errorf("cache.max_entries is negative")
		}
		kind, name, ok := strings.Cut(c.Key, ":")
		switch {
		case c.Key == "":
			return nil, fmt.Errorf("cache.key is required (header:<name> or cookie:<name>, the credential the service decides on)")
		case !ok || name == "" || kind != "header" && kind != "cookie":
			return nil, fmt.Errorf("cache.key %q: want header:<name> or cookie:<name>", c.Key)
		}
		if kind == "header" {
			canon, err := httpcheck.Name(name)
			if err != nil {
				return nil, fmt.Errorf("cache.key: %w", err)
			}
			f.keyHeader = []byte(canon)
		} else {
			// A cookie name is a token too; its case is kept (cookie names are case-sensitive).
			if _, err := httpcheck.Name(name); err != nil {
				return nil, fmt.Errorf("cache.key: cookie name: %w", err)
			}
			f.keyCookie = []byte(name)
		}
		switch c.Scope {
		case "", "request":
			f.keyRequest = true
		case "credential":
		default:
			return nil, fmt.Errorf("cache.scope %q: want request or credential", c.Scope)
		}
		f.cache = newCache(n, ttl)
	}

	host := u.Hostname()
	hc := &fasthttp.HostClient{
		Addr:                     net.JoinHostPort(host, port),
		Name:                     "weir-extauth",
		NoDefaultUserAgentHeader: true,
		IsTLS:                    u.Scheme == "https",
		MaxConns:                 maxConns,
		MaxConnWaitTimeout:       f.timeout,
		ReadTimeout:              f.timeout,
		WriteTimeout:             f.timeout,
		MaxIdleConnDuration:      60 * time.Second,
		MaxResponseBodySize:      maxResp,
		DisablePathNormalizing:   true,
		DialTimeout:              fasthttp.DialTimeout,
	}
	if hc.IsTLS {
		hc.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	f.hc = hc
	return f, nil
}

// names validates a header name list and returns the canonical names.
func names(key string, list []string, refused map[string]bool) ([][]byte, error) {
	seen := map[string]bool{}
	var out [][]byte
	for i, n := range list {
		canon, err := httpcheck.EditableName(n)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, i, err)
		}
		if refused[canon] {
			return nil, fmt.Errorf("%s[%d]: %q is set by the gateway", key, i, n)
		}
		if seen[canon] {
			return nil, fmt.Errorf("%s[%d]: %q given twice", key, i, n)
		}
		seen[canon] = true
		out = append(out, []byte(canon))
	}
	return out, nil
}
