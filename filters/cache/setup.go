package cache

import (
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Name is the name configs use for this filter.
const Name = "cache"

func init() {
	filter.Register(Name, New)
	filter.RegisterPurger(Name, func(r filter.PurgeRequest) int { return Purge(r.Key, r.Prefix, r.Tag) })
}

// Config is the filter's config.
type Config struct {
	// TTL, when set, replaces the freshness lifetime the response gives (max-age, s-maxage,
	// Expires) for every response that may be stored; no-store, private and no-cache still apply.
	TTL time.Duration `mapstructure:"ttl"`
	// MaxBodyBytes is the largest body stored; a larger one passes through unstored.
	MaxBodyBytes config.Size `mapstructure:"max_body_bytes"`
	// MaxBytes bounds the memory of this cache (bodies, headers and keys).
	MaxBytes config.Size `mapstructure:"max_bytes"`
	// Statuses are the response statuses stored.
	Statuses []int `mapstructure:"statuses"`
	// Heuristic lets a response without explicit freshness but with Last-Modified be fresh for
	// a tenth of its age (at most a day), as RFC 9111 §4.2.2 allows.
	Heuristic bool `mapstructure:"heuristic"`
	// StaleWhileRevalidate and StaleIfError apply when the response gives no such directive.
	StaleWhileRevalidate time.Duration `mapstructure:"stale_while_revalidate"`
	StaleIfError         time.Duration `mapstructure:"stale_if_error"`
	// CoalesceWait bounds how long a miss waits for another request already fetching its key.
	CoalesceWait time.Duration `mapstructure:"coalesce_wait"`
	// TagHeader names the response header whose values tag an entry for purges.
	TagHeader string `mapstructure:"tag_header"`
	// Key says what besides method, host and path tells entries apart.
	Key KeyConfig `mapstructure:"key"`
}

// KeyConfig is the cache key's optional parts.
type KeyConfig struct {
	// Query lists the query parameters in the key (sorted by name); empty keeps the whole
	// query string as sent.
	Query []string `mapstructure:"query"`
	// Headers lists request headers whose values are part of the key.
	Headers []string `mapstructure:"headers"`
}

const (
	defaultMaxBody      = 1 << 20
	defaultMaxBytes     = 64 << 20
	defaultCoalesceWait = 5 * time.Second
	defaultTagHeader    = "Cache-Tag"
)

// defaultStatuses are the statuses RFC 9110 §15.1 calls heuristically cacheable, less 206
// (ranges are not cached).
var defaultStatuses = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// New is the filter's factory. The store lives in env.Shared under a key naming the route, the
// filter's place in it and the memory bound, so a reload keeps every entry.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	f := &Filter{slot: env.Slot, ttl: cfg.TTL, heuristic: cfg.Heuristic,
		swr: cfg.StaleWhileRevalidate, sie: cfg.StaleIfError}
	if cfg.TTL < 0 || cfg.StaleWhileRevalidate < 0 || cfg.StaleIfError < 0 || cfg.CoalesceWait < 0 {
		return nil, fmt.Errorf("ttl, stale_while_revalidate, stale_if_error and coalesce_wait may not be negative")
	}
	f.maxBody = int64(cfg.MaxBodyBytes)
	if f.maxBody == 0 {
		f.maxBody = defaultMaxBody
	}
	maxBytes := int64(cfg.MaxBytes)
	if maxBytes == 0 {
		maxBytes = defaultMaxBytes
	}
	if f.maxBody < 0 || maxBytes < 0 {
		return nil, fmt.Errorf("max_body_bytes and max_bytes may not be negative")
	}
	if f.maxBody > maxBytes {
		return nil, fmt.Errorf("max_body_bytes %d exceeds max_bytes %d", f.maxBody, maxBytes)
	}
	f.wait = cfg.CoalesceWait
	if f.wait == 0 {
		f.wait = defaultCoalesceWait
	}
	statuses := cfg.Statuses
	if len(statuses) == 0 {
		statuses = defaultStatuses
	}
	for _, s := range statuses {
		if s < 200 || s > 599 || s == 206 || s == 304 {
			return nil, fmt.Errorf("statuses: %d cannot be stored (200 to 599, not 206 or 304)", s)
		}
		f.statuses[s-200] = true
	}
	tag := cfg.TagHeader
	if tag == "" {
		tag = defaultTagHeader
	}
	if !httpsyntax.IsToken(tag) {
		return nil, fmt.Errorf("tag_header: %q is not a header name", tag)
	}
	f.tagHeader = textproto.CanonicalMIMEHeaderKey(tag)

	for _, q := range cfg.Key.Query {
		if q == "" {
			return nil, fmt.Errorf("key.query: empty parameter name")
		}
	}
	f.query = slices.Clone(cfg.Key.Query)
	slices.Sort(f.query)
	f.query = slices.Compact(f.query)
	for _, h := range cfg.Key.Headers {
		if !httpsyntax.IsToken(h) {
			return nil, fmt.Errorf("key.headers: %q is not a header name", h)
		}
		f.keyHeaders = append(f.keyHeaders, textproto.CanonicalMIMEHeaderKey(h))
	}

	def := fmt.Sprintf("cache/%s/%s/max_bytes=%d", env.Route, env.Filter, maxBytes)
	create := func() (io.Closer, error) {
		s, err := newStore(maxBytes, env.Route)
		if err != nil {
			return nil, fmt.Errorf("create store: %w", err)
		}
		register(s)
		return s, nil
	}
	var st io.Closer
	var err error
	if env.Shared != nil {
		st, f.release, err = env.Shared.Acquire(def, create)
		if err != nil {
			return nil, err
		}
	} else {
		if st, err = create(); err != nil {
			return nil, err
		}
		f.release = st.Close
	}
	f.store = st.(*store)
	f.route = strings.Clone(env.Route)
	f.m = newCounters(f.route)
	if env.Upstreams != nil && env.Upstream != "" {
		if cl, ok := env.Upstreams.Upstream(env.Upstream); ok {
			f.caller = cl
		}
	}
	return f, nil
}
