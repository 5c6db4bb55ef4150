package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "ratelimit"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Key says whose requests are counted together: client_ip (default), route, consumer,
	// header:<Name> or claim:<name>.
	Key string `mapstructure:"key"`
	// Limits are checked together; a request must pass all of them.
	Limits []LimitConfig `mapstructure:"limits"`
	// Rate, Per and Burst are the shorthand for a single limit.
	Rate  int64         `mapstructure:"rate"`
	Per   time.Duration `mapstructure:"per"`
	Burst int64         `mapstructure:"burst"`
	// Mode is local (in memory, per gateway) or redis (shared by every gateway using it).
	Mode  string       `mapstructure:"mode"`
	Redis *RedisConfig `mapstructure:"redis"`
	// Fail is what happens while Redis cannot be reached: open lets requests through, closed
	// answers 503.
	Fail string `mapstructure:"fail"`
	// MaxKeys bounds the keys the local mode keeps.
	MaxKeys int `mapstructure:"max_keys"`
	// Headers sends RateLimit-Policy and RateLimit on every answer.
	Headers *bool `mapstructure:"headers"`
}

// LimitConfig is one limit: Rate requests per Per, Burst at once.
type LimitConfig struct {
	Name  string        `mapstructure:"name"`
	Rate  int64         `mapstructure:"rate"`
	Per   time.Duration `mapstructure:"per"`
	Burst int64         `mapstructure:"burst"`
}

const (
	defaultMaxKeys = 100_000
	defaultTimeout = 50 * time.Millisecond
	defaultPrefix  = "weir:rl:"
	maxBurst       = 1_000_000_000
)

// New is the filter's factory. It validates the config, precomputes the answer headers and
// acquires the limiter state from env.Shared under a key naming the route and the whole
// definition, so a reload that leaves the definition unchanged keeps every key's state.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{slot: env.Slot, headers: cfg.Headers == nil || *cfg.Headers,
		mAllowed: telemetry.RateLimitDecision(env.Route, env.Filter, "allowed"),
		mLimited: telemetry.RateLimitDecision(env.Route, env.Filter, "limited"),
		mError:   telemetry.RateLimitDecision(env.Route, env.Filter, "error")}
	if err := f.parseKey(cfg.Key); err != nil {
		return nil, err
	}
	limits, err := parseLimits(cfg)
	if err != nil {
		return nil, err
	}
	f.limits = limits
	f.policy = policyHeader(limits)
	f.names = make([][]byte, len(limits))
	for i, l := range limits {
		f.names[i] = []byte(strconv.Quote(l.name))
	}

	def := fmt.Sprintf("key=%s;limits=%v", cfg.Key, limitsDef(limits))
	var create func() (io.Closer, error)
	switch cfg.Mode {
	case "", "local":
		if cfg.Redis != nil {
			return nil, fmt.Errorf("redis: set only with mode redis")
		}
		if cfg.Fail != "" {
			return nil, fmt.Errorf("fail: applies to mode redis only")
		}
		maxKeys := cfg.MaxKeys
		if maxKeys == 0 {
			maxKeys = defaultMaxKeys
		}
		if maxKeys < 0 {
			return nil, fmt.Errorf("max_keys: %d is negative", maxKeys)
		}
		def += fmt.Sprintf(";local;max_keys=%d", maxKeys)
		create = func() (io.Closer, error) { return newLocalStore(limits, maxKeys, nil, true), nil }
	case "redis":
		if cfg.MaxKeys != 0 {
			return nil, fmt.Errorf("max_keys: applies to mode local only (redis expires idle keys itself)")
		}
		switch cfg.Fail {
		case "", "open":
			f.failOpen = true
		case "closed":
		default:
			return nil, fmt.Errorf("fail: %q is not open or closed", cfg.Fail)
		}
		rc, password, err := redisConfig(cfg.Redis)
		if err != nil {
			return nil, err
		}
		pw := sha256.Sum256([]byte(password))
		// The password enters the key as a digest: the store is rebuilt when it changes, and
		// the key (shown by the admin API) reveals nothing.
		def += fmt.Sprintf(";redis=%s;db=%d;user=%q;pw=%s;timeout=%s;prefix=%q;fail=%t",
			rc.Addr, rc.DB, rc.Username, hex.EncodeToString(pw[:8]), rc.Timeout, rc.Prefix, f.failOpen)
		route, log := env.Route, env.Log
		create = func() (io.Closer, error) { return newRedisStore(limits, rc, password, route, log), nil }
	default:
		return nil, fmt.Errorf("mode: %q is not local or redis", cfg.Mode)
	}

	var store io.Closer
	if env.Shared != nil {
		store, f.release, err = env.Shared.Acquire("ratelimit/"+env.Route+"/"+def, create)
		if err != nil {
			return nil, err
		}
	} else {
		store, _ = create()
		f.release = store.Close
	}
	switch s := store.(type) {
	case *localStore:
		f.local = s
	case *redisStore:
		f.remote = s
	}
	return f, nil
}

// parseKey decodes the key setting.
func (f *Filter) parseKey(key string) error {
	switch {
	case key == "" || key == "client_ip":
		f.kind = kindIP
	case key == "route":
		f.kind = kindRoute
	case key == "consumer":
		f.kind = kindConsumer
	case strings.HasPrefix(key, "header:"):
		canon, err := httpcheck.Name(key[len("header:"):])
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		f.kind, f.header = kindHeader, []byte(canon)
	case strings.HasPrefix(key, "claim:"):
		name := key[len("claim:"):]
		if name == "" {
			return fmt.Errorf("key: claim: needs a claim name (claim:sub)")
		}
		f.kind, f.claim = kindClaim, name
	default:
		return fmt.Errorf("key: %q is not client_ip, route, consumer, header:<name> or claim:<name>", key)
	}
	return nil
}

func parseLimits(cfg Config) ([]limit, error) {
	list := cfg.Limits
	short := cfg.Rate != 0 || cfg.Per != 0 || cfg.Burst != 0
	switch {
	case short && len(list) > 0:
		return nil, fmt.Errorf("rate, per and burst are the shorthand for one limit; use them or limits, not both")
	case short:
		list = []LimitConfig{{Rate: cfg.Rate, Per: cfg.Per, Burst: cfg.Burst}}
	case len(list) == 0:
		return nil, fmt.Errorf("limits: at least one limit is required (or rate and per)")
	case len(list) > maxLimits:
		return nil, fmt.Errorf("limits: %d limits; at most %d", len(list), maxLimits)
	}
	var out []limit
	seen := map[string]bool{}
	for i, lc := range list {
		where := "limits[" + strconv.Itoa(i) + "]"
		if short {
			where = "rate"
		}
		if lc.Per == 0 {
			lc.Per = time.Second
		}
		switch {
		case lc.Rate <= 0:
			return nil, fmt.Errorf("%s: rate must be at least 1", where)
		case lc.Per < time.Second || lc.Per%time.Second != 0:
			// The RateLimit-Policy window is whole seconds.
			return nil, fmt.Errorf("%s: per %s is not a whole number of seconds", where, lc.Per)
		case lc.Burst < 0 || lc.Burst > maxBurst:
			return nil, fmt.Errorf("%s: burst %d is outside 0 to %d", where, lc.Burst, maxBurst)
		case int64(lc.Per)/lc.Rate < 1000:
			return nil, fmt.Errorf("%s: rate %d per %s is above one request per microsecond", where, lc.Rate, lc.Per)
		}
		if lc.Burst == 0 {
			lc.Burst = lc.Rate
		}
		if lc.Name == "" {
			lc.Name = "default"
			if len(list) > 1 {
				lc.Name = fmt.Sprintf("%d-per-%s", lc.Rate, window(lc.Per))
			}
		}
		if err := checkPolicyName(lc.Name); err != nil {
			return nil, fmt.Errorf("%s: name: %w", where, err)
		}
		if seen[lc.Name] {
			return nil, fmt.Errorf("%s: name %q used twice", where, lc.Name)
		}
		seen[lc.Name] = true
		out = append(out, newLimit(lc.Name, lc.Rate, lc.Burst, lc.Per))
	}
	return out, nil
}

// window spells a whole number of seconds in its largest exact unit: 86400s is 1d.
func window(d time.Duration) string {
	s := int64(d / time.Second)
	for _, u := range []struct {
		n    int64
		unit string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}} {
		if s%u.n == 0 {
			return strconv.FormatInt(s/u.n, 10) + u.unit
		}
	}
	return strconv.FormatInt(s, 10) + "s"
}

// checkPolicyName keeps a policy name to characters that need no escaping in a structured
// field string.
func checkPolicyName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("must be 1 to 64 characters")
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.'", n)
		}
	}
	return nil
}

func limitsDef(ls []limit) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "%s:%d/%s/%d,", l.name, l.rate, l.per, l.burst)
	}
	return b.String()
}

// redisConfig validates the redis subtree and resolves the password.
func redisConfig(rc *RedisConfig) (RedisConfig, string, error) {
	if rc == nil || rc.Addr == "" {
		return RedisConfig{}, "", fmt.Errorf("redis: addr is required with mode redis")
	}
	out := *rc
	if out.Timeout == 0 {
		out.Timeout = defaultTimeout
	}
	if out.Timeout < 0 {
		return out, "", fmt.Errorf("redis: timeout is negative")
	}
	if out.Prefix == "" {
		out.Prefix = defaultPrefix
	}
	if out.DB < 0 {
		return out, "", fmt.Errorf("redis: db %d is negative", out.DB)
	}
	password := out.Password
	if out.PasswordEnv != "" {
		if out.Password != "" {
			return out, "", fmt.Errorf("redis: password and password_env are both set")
		}
		v, ok := os.LookupEnv(out.PasswordEnv)
		if !ok {
			return out, "", fmt.Errorf("redis: password_env: environment variable %s is not set", out.PasswordEnv)
		}
		password = v
	}
	out.Password = ""
	return out, password, nil
}

// policyHeader is the RateLimit-Policy value: one item per limit, its quota and window.
func policyHeader(ls []limit) []byte {
	var b []byte
	for i, l := range ls {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, l.name)
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, l.rate, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(l.per/time.Second), 10)
	}
	return b
}
