package basicauth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "basicauth"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Realm is named in the WWW-Authenticate challenge.
	Realm string `mapstructure:"realm"`
	// Htpasswd is a file of "user:bcrypt-hash" lines, besides the consumers' basic users.
	Htpasswd string `mapstructure:"htpasswd"`
	// HideCredentials removes the Authorization header before forwarding (default true).
	HideCredentials *bool `mapstructure:"hide_credentials"`
	// Anonymous names a declared consumer that a request without credentials continues as.
	Anonymous string `mapstructure:"anonymous"`
	// MaxConcurrent bounds the bcrypt verifications running at once; more answer 503.
	MaxConcurrent int `mapstructure:"max_concurrent"`
	// CacheTTL is how long a verified user and password is remembered; 0 disables the cache.
	CacheTTL *time.Duration `mapstructure:"cache_ttl"`
	// CacheSize bounds the remembered verifications.
	CacheSize int `mapstructure:"cache_size"`
}

// Defaults. bcrypt at cost 10 takes tens of milliseconds of CPU: a short cache spares a client
// sending the same password on every request, and the bound keeps a flood of wrong passwords
// (never cached) to a few cores.
const (
	defaultRealm    = "weir"
	defaultCacheTTL = time.Minute
	defaultCacheMax = 4096
)

func defaultMaxConcurrent() int { return max(2, runtime.GOMAXPROCS(0)) }

// New is the filter's factory.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	realm := cfg.Realm
	if realm == "" {
		realm = defaultRealm
	}
	if strings.ContainsAny(realm, "\"\\") {
		return nil, fmt.Errorf("realm: %q may not contain '\"' or '\\'", realm)
	}
	if err := httpcheck.Value(realm); err != nil {
		return nil, fmt.Errorf("realm: %w", err)
	}
	f := &Filter{
		decisions: telemetry.NewAuthDecisions(env.Route, env.Filter),
		consumers: env.Consumers,
		hide:      cfg.HideCredentials == nil || *cfg.HideCredentials,
		challenge: []byte(`Basic realm="` + realm + `", charset="UTF-8"`),
	}
	if cfg.Anonymous != "" {
		if f.anonymous = env.Consumers.Named(cfg.Anonymous); f.anonymous == nil {
			return nil, fmt.Errorf("anonymous: consumer %q is not declared under consumers", cfg.Anonymous)
		}
	}
	n := cfg.MaxConcurrent
	switch {
	case n == 0:
		n = defaultMaxConcurrent()
	case n < 0:
		return nil, fmt.Errorf("max_concurrent: is %d; want at least 1", n)
	}
	f.sem = make(chan struct{}, n)
	ttl := defaultCacheTTL
	if cfg.CacheTTL != nil {
		ttl = *cfg.CacheTTL
	}
	if ttl < 0 {
		return nil, fmt.Errorf("cache_ttl: is negative (%s)", ttl)
	}
	size := cfg.CacheSize
	if size == 0 {
		size = defaultCacheMax
	}
	if size < 0 {
		return nil, fmt.Errorf("cache_size: is %d; want at least 1", size)
	}
	if ttl > 0 {
		f.cache = newCache(ttl, size)
	}
	if _, err := rand.Read(f.cacheKey[:]); err != nil {
		return nil, fmt.Errorf("draw cache key: %w", err)
	}

	if cfg.Htpasswd != "" {
		src, err := os.ReadFile(env.Path(cfg.Htpasswd))
		if err != nil {
			return nil, fmt.Errorf("htpasswd: %w", err)
		}
		users, err := ParseHtpasswd(src)
		if err != nil {
			return nil, fmt.Errorf("htpasswd: %s: %w", cfg.Htpasswd, err)
		}
		f.files = make(map[string]fileUser, len(users))
		for _, u := range users {
			if k, _ := env.Consumers.ByBasicUser([]byte(u.User)); k != nil {
				return nil, fmt.Errorf("htpasswd: %s: line %d: user %q is also a Basic user of consumer %q; keep one",
					cfg.Htpasswd, u.Line, u.User, k.Name)
			}
			// A file user is the declared consumer of that name, or one of its own.
			k := env.Consumers.Named(u.User)
			if k == nil {
				k = &filter.Consumer{Name: u.User, Headers: [][2]string{{"X-Consumer-Name", u.User}}}
			}
			f.files[u.User] = fileUser{c: k, hash: u.Hash}
		}
	}
	if len(f.files) == 0 && !hasBasic(env.Consumers) {
		env.Log.Warn().Msg("basicauth: no consumer has a Basic user and no htpasswd users, so every request is refused")
	}
	return f, nil
}

func hasBasic(cs *filter.Consumers) bool {
	for _, k := range cs.All() {
		if len(k.Basic) > 0 {
			return true
		}
	}
	return false
}

// HtpasswdUser is one line of an htpasswd file.
type HtpasswdUser struct {
	Line int
	User string
	Hash []byte
}

// maxHtpasswdLine bounds a line: a user name and a 60-byte bcrypt hash.
const maxHtpasswdLine = 1024

// ParseHtpasswd parses an htpasswd file: "user:hash" lines, blank lines and "#" comments.
// Only bcrypt hashes ($2a$, $2b$, $2y$) are accepted: MD5 ($apr1$), SHA ({SHA}), crypt and
// plain-text passwords are weak or ambiguous and are refused, naming the line, never the hash.
func ParseHtpasswd(src []byte) ([]HtpasswdUser, error) {
	var out []HtpasswdUser
	seen := map[string]int{}
	for i, line := range strings.Split(string(src), "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if len(line) > maxHtpasswdLine {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n, maxHtpasswdLine)
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		if user == "" || strings.ContainsFunc(user, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("line %d: empty user name or one with control bytes", n)
		}
		if err := checkBcrypt(hash); err != nil {
			return nil, fmt.Errorf("line %d: user %q: %w", n, user, err)
		}
		if first, dup := seen[user]; dup {
			return nil, fmt.Errorf("line %d: user %q is also on line %d", n, user, first)
		}
		seen[user] = n
		out = append(out, HtpasswdUser{Line: n, User: user, Hash: []byte(hash)})
	}
	return out, nil
}

// checkBcrypt accepts bcrypt hashes only. The error never quotes the hash.
func checkBcrypt(h string) error {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
	case strings.HasPrefix(h, "$apr1$"), strings.HasPrefix(h, "$1$"):
		return errors.New("MD5 hashes are refused; use bcrypt (htpasswd -B)")
	case strings.HasPrefix(h, "{SHA}"):
		return errors.New("SHA-1 hashes are refused; use bcrypt (htpasswd -B)")
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
		return errors.New("SHA-crypt hashes are refused; use bcrypt (htpasswd -B)")
	default:
		return errors.New("not a bcrypt hash (crypt and plain text are refused); use bcrypt (htpasswd -B)")
	}
	if len(h) != 60 || !validBcrypt(h) {
		return errors.New("malformed bcrypt hash (want 60 characters: $2y$<cost>$<salt and hash>)")
	}
	return nil
}
