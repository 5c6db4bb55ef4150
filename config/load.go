package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment override: WEIR_SERVER_LISTEN overrides server.listen.
const EnvPrefix = "WEIR"

// A setting is one key of the server or access_log sections: its default, applied before
// decoding, and the environment variable that overrides it. The README's table is checked
// against this list by a test.
type setting struct {
	key string
	def any
}

// settings lists every key that has a default and an environment override. Durations and sizes
// are written as strings so that defaults go through the same parsing as the file.
// DefaultStripClientHeaders are the fields that name a client or rewrite a URL, which common
// frameworks believe (X-Real-IP, True-Client-IP, X-Original-URL, …), so that only trusted
// proxies may set them (server.strip_client_headers).
var DefaultStripClientHeaders = []string{
	"X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "X-Client-IP",
	"X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Prefix",
}

var settings = []setting{
	// The proxy listener.
	{"server.listen", ":8080"},
	// The admin API listens on loopback only unless told otherwise; empty disables it.
	{"server.admin", "127.0.0.1:9901"},
	// No token by default: the admin API is protected by being on loopback.
	{"server.admin_token", ""},
	// Loopback names and addresses and the listener's own address are always accepted as Host.
	{"server.admin_hosts", []string{}},
	// A non-loopback admin listener needs a token unless the operator opts out explicitly.
	{"server.admin_insecure", false},
	// The profiler is opt-in (see Server.AdminPprof).
	{"server.admin_pprof", false},
	// How long a shutdown or reload waits for in-flight requests before closing connections.
	{"server.drain_timeout", "30s"},
	// Time allowed to read a whole request header, so slow-loris clients are cut off.
	{"server.read_timeout", "30s"},
	{"server.write_timeout", "30s"},
	// Keep-alive connections idle longer than this are closed.
	{"server.idle_timeout", "60s"},
	// After a second idle, a keep-alive connection gives back its read buffer and goroutine
	// (about 20 KiB) and waits on a few KiB; its next request waits about 35 µs longer
	// (BenchmarkParkWake).
	{"server.idle_park_after", "1s"},
	// 16 KiB fits every real browser and API client; larger headers are an attack or a bug.
	{"server.max_header_bytes", DefaultMaxHeaderBytes},
	// Bodies stream, so this caps the declared Content-Length and the bytes streamed rather
	// than memory; 100 MiB allows uploads without letting one client stream forever. 0 disables.
	{"server.max_body_bytes", "100MiB"},
	// A body must arrive within this, however it trickles; raise it for large uploads over
	// slow links.
	{"server.body_timeout", "60s"},
	// Bodies up to 64 KiB (most API requests) are read whole before a plugin instance or an
	// upstream connection is taken; the worst case is this much memory per connection.
	{"server.body_buffer_bytes", "64KiB"},
	{"server.max_conns", 10000},
	// 0 means no per-client-IP limit: behind a load balancer all clients share one IP.
	{"server.max_conns_per_ip", 0},
	// Each tunnel holds two connections, two goroutines and their buffers (about 50 KiB).
	{"server.max_tunnels", 10000},
	// No peer is trusted to set X-Forwarded-* until the operator says so.
	{"server.trusted_proxies", []string{}},
	{"server.strip_client_headers", DefaultStripClientHeaders},
	{"server.via", "weir"},
	// Compiled plugins are cached on disk so a restart does not recompile them.
	{"server.plugin_cache_dir", ""},
	// Per-request metrics cost a clock read and a few atomic adds; on unless measuring that.
	{"server.metrics", true},
	// h2 by ALPN on TLS listeners, as browsers expect; h2c (plain, prior knowledge) is opt-in,
	// since only a client told to speak it will.
	{"server.http2.enabled", true},
	{"server.http2.h2c", false},
	// The RFC 9113 recommended minimum; browsers open far fewer per connection.
	{"server.http2.max_concurrent_streams", 100},
	// Generous for browsers (which cancel streams as pages change) and gRPC clients, far below
	// the hundreds of thousands per second of a rapid-reset or ping flood.
	{"server.http2.max_resets_per_second", 100},
	{"server.http2.max_pings_per_second", 10},
	{"server.http2.max_settings_per_second", 10},
	// A header block of server.max_header_bytes needs one or two frames; 32 is far past any
	// client's need.
	{"server.http2.max_continuation_frames", 32},
	{"access_log.enabled", true},
	{"access_log.output", "stdout"},
	{"access_log.sample", 1},
	{"access_log.fields", []string{}},
	{"log.level", "info"},
	{"log.format", "auto"},
}

// Per-upstream defaults. Upstream names are chosen by the user, so viper cannot hold defaults
// for them; each upstream is decoded on top of DefaultUpstream instead, which keeps an explicit
// 0 in the file distinct from an absent key.
const (
	defaultKind           = KindHTTP
	defaultBalance        = BalanceRoundRobin
	defaultConnectTimeout = "2s"
	defaultTimeout        = "30s"
	defaultIdleTimeout    = "90s"
	defaultMaxConns       = 512
	defaultMaxConnWait    = "1s"
	// Names are re-resolved this often, since Go's resolver does not expose record TTLs.
	defaultDNSRefresh = "30s"
)

// DefaultMaxHeaderBytes is server.max_header_bytes's default; the plugin host's header budget
// for a guest defaults to it too.
const DefaultMaxHeaderBytes = 16 << 10

// DefaultUpstream returns an upstream with every default applied and no targets.
func DefaultUpstream() Upstream {
	u := Upstream{Kind: defaultKind, Balance: defaultBalance, MaxConns: defaultMaxConns}
	u.ConnectTimeout = mustDuration(defaultConnectTimeout)
	u.Timeout = mustDuration(defaultTimeout)
	u.IdleTimeout = mustDuration(defaultIdleTimeout)
	u.MaxConnWait = mustDuration(defaultMaxConnWait)
	u.DNSRefresh = mustDuration(defaultDNSRefresh)
	// Active checks are off until a path is given; these apply once it is.
	u.Health = Health{Interval: 5 * time.Second, Timeout: time.Second, Jitter: 500 * time.Millisecond,
		HealthyThreshold: 1, UnhealthyThreshold: 2}
	// Envoy's outlier defaults, with a lower connect-failure threshold: a refused connection is
	// a clear signal and retrying it elsewhere costs nothing.
	u.Outlier = Outlier{Consecutive5xx: 5, ConsecutiveConnectFailures: 3, BaseEjection: 30 * time.Second,
		MaxEjection: 5 * time.Minute, MaxEjectedPercent: 50}
	u.Retries = DefaultRetries()
	return u
}

// DefaultRetries is the retry policy of an upstream or route that does not say otherwise: one
// retry, 25 ms backoff doubling to 250 ms, and a budget of 20 % of requests plus 3 a second.
func DefaultRetries() Retries {
	return Retries{Attempts: 1, Backoff: 25 * time.Millisecond, MaxBackoff: 250 * time.Millisecond,
		Budget: 0.2, MinRetriesPerSecond: 3, OnGatewayError: true}
}

// EnvVar returns the environment variable that overrides key ("server.listen" gives
// "WEIR_SERVER_LISTEN"), or "" when key has no override.
func EnvVar(key string) string {
	for _, s := range settings {
		if s.key == key {
			return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		}
	}
	return ""
}

// Load reads the YAML config at path, applies defaults and WEIR_* environment overrides,
// decodes it strictly and validates it. Checks that need more than the schema (filter names and
// configs, which need the filter registry) are the caller's: when the config has problems, each
// check in more also runs on what was decoded, so that one pass lists every problem; a config
// without problems is returned as is and the caller's own build checks the rest, once.
func Load(path string, more ...func(*Config) error) (*Config, error) {
	// One read, shared by viper and the case-preserving pass, so both see the same bytes even if
	// the file is being replaced while we load it.
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Err: fmt.Errorf("read config: %w", err)}
	}
	return Parse(path, data, more...)
}

// Parse is Load from bytes; name is used in error messages and as Config.File.
func Parse(name string, data []byte, more ...func(*Config) error) (*Config, error) {
	c, err := decode(name, data)
	if c == nil {
		return nil, err
	}
	errs := []error{err, Validate(c, nil)}
	if errors.Join(errs...) != nil {
		for _, check := range more {
			errs = append(errs, check(c))
		}
		// Messages may quote values; the decoded config knows which of them are secret.
		return nil, c.RedactError(errors.Join(errs...))
	}
	c.Hash = c.computeHash()
	return c, nil
}

// topKeys are the sections of a config file.
var topKeys = []string{"server", "access_log", "log", "tracing", "upstreams", "routes", "plugins", "consumers"}

// listKeys are the sections decoded without viper, entry by entry; the others are settings,
// which viper merges with defaults and environment overrides.
var listKeys = []string{"upstreams", "routes", "plugins", "consumers"}

// copyYAML copies a decoded YAML value deeply enough that changing its maps and lists leaves v
// as it was.
func copyYAML(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = copyYAML(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = copyYAML(e)
		}
		return l
	}
	return v
}

// decode turns bytes into a Config. It returns a nil Config only when the bytes are not a YAML
// mapping at all; otherwise it decodes as much as it can, so that Validate can report the rest.
func decode(name string, data []byte) (*Config, error) {
	p := &problems{file: name, lines: map[string]int{}, envOf: envSet}
	doc, raw, err := readYAML(data)
	if err != nil {
		return nil, yamlError(name, err)
	}
	nodeLines(doc, "", p.lines)

	top, ok := raw.(map[string]any)
	if !ok && raw != nil {
		p.add("", "", "", fmt.Errorf("expected a mapping of sections (server, upstreams, routes…), got %s", yamlKind(raw)))
		return nil, p.err()
	}
	sections := map[string]any{}
	for _, k := range sortedKeys(top) {
		canon := ""
		for _, t := range topKeys {
			if strings.EqualFold(k, t) {
				canon = t
			}
		}
		switch {
		case canon == "":
			p.add(k, "", "", fmt.Errorf("unknown key %q (want one of %s)", k, strings.Join(topKeys, ", ")))
		case hasKey(sections, canon):
			p.add(k, "", "", fmt.Errorf("duplicate key %q", k))
		default:
			sections[canon] = top[k]
		}
	}

	c := &Config{File: name, lines: p.lines}
	decodeSettings(p, data, sections, c)
	decodeTracing(p, sections["tracing"], c)
	decodeUpstreams(p, sections["upstreams"], c)
	decodeRoutes(p, sections["routes"], c)
	decodePlugins(p, sections["plugins"], c)
	decodeConsumers(p, sections["consumers"], c)
	return c, p.err()
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

// readYAML parses exactly one YAML document into its node tree (for line numbers) and a
// generic value with key case preserved.
func readYAML(data []byte) (*yaml.Node, any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &doc, nil, nil
		}
		return nil, nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("yaml: line %d: a config file holds one YAML document, found another", extra.Line)
	}
	var raw any
	// Decoding through yaml.v3 (rather than walking nodes) gets its duplicate-key checks and its
	// limits on alias expansion.
	if err := doc.Decode(&raw); err != nil {
		return nil, nil, err
	}
	return &doc, normalize(raw), nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns yaml.v3's errors into *Error values that carry the line.
func yamlError(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out []error
	for _, m := range msgs {
		e := &Error{File: name}
		if sub := yamlLine.FindStringSubmatch(m); sub != nil {
			e.Line, _ = strconv.Atoi(sub[1])
			m = sub[2]
		}
		e.Err = fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(m, "yaml: "))
		out = append(out, e)
	}
	return errors.Join(out...)
}

// normalize makes every mapping a map[string]any. yaml.v3 produces map[any]any when a mapping
// has a non-string key (`1: x`); config keys are names, so such keys become their text.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	}
	return v
}

// nodeLines records the line of every key and list item under n, by key path. Aliases are not
// followed: their line is the alias itself, and following them could take exponential time.
func nodeLines(n *yaml.Node, path string, lines map[string]int) {
	set := func(p string, line int) {
		if _, ok := lines[p]; !ok {
			lines[p] = line
		}
		if lp := strings.ToLower(p); lp != p {
			if _, ok := lines[lp]; !ok {
				lines[lp] = line
			}
		}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			nodeLines(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			set(p, k.Line)
			nodeLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			set(p, c.Line)
			nodeLines(c, p, lines)
		}
	}
}

// envSet reports whether the value at path came from an environment variable.
func envSet(path string) bool {
	name := EnvVar(path)
	if name == "" {
		return false
	}
	_, ok := os.LookupEnv(name)
	return ok
}

// newViper returns a viper with every default set and every environment override bound.
func newViper() *viper.Viper {
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	// An empty variable is an override too: WEIR_SERVER_ADMIN= disables the admin listener.
	v.AllowEmptyEnv(true)
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
		// BindEnv only fails when given no key.
		_ = v.BindEnv(s.key)
	}
	return v
}

// decodeSettings fills the server and access_log sections through viper, which merges the file
// with defaults and environment overrides.
func decodeSettings(p *problems, data []byte, sections map[string]any, c *Config) {
	v := newViper()
	readFile := true
	for _, s := range []string{"server", "access_log", "log"} {
		if sec, ok := sections[s]; ok && sec != nil {
			if _, isMap := sec.(map[string]any); !isMap {
				p.add(s, "", "", fmt.Errorf("expected a mapping, got %s", yamlKind(sec)))
				// Viper would mix the scalar with the defaults in surprising ways; the
				// config is already rejected, so decode the defaults alone.
				readFile = false
			}
		}
	}
	if readFile {
		// Viper gets the settings sections already parsed, not the file: parsing a config of
		// thousands of routes a second time cost a fifth of a reload. It lower-cases keys in
		// place, so it gets a copy.
		settings := map[string]any{}
		for k, sec := range sections {
			if !slices.Contains(listKeys, k) {
				settings[k] = copyYAML(sec)
			}
		}
		if err := v.MergeConfigMap(settings); err != nil {
			p.add("", "", "", fmt.Errorf("read config: %w", err))
			return
		}
	}
	all := v.AllSettings()
	// server.listen is an address or a list of listeners: decoded on its own, after server.tls
	// (which a single address takes as its TLS).
	server, _ := all["server"].(map[string]any)
	rest := make(map[string]any, len(server))
	var listen any
	for k, x := range server {
		if k == "listen" {
			listen = x
			continue
		}
		rest[k] = x
	}
	if err := decodeInto(rest, &c.Server, "server"); err != nil {
		p.addAll(err, "", "")
	}
	decodeListen(p, listen, c)
	if err := decodeInto(all["access_log"], &c.AccessLog, "access_log"); err != nil {
		p.addAll(err, "", "")
	}
	if err := decodeInto(all["log"], &c.Log, "log"); err != nil {
		p.addAll(err, "", "")
	}
}

func decodeUpstreams(p *problems, sec any, c *Config) {
	if sec == nil {
		return
	}
	m, ok := sec.(map[string]any)
	if !ok {
		p.add("upstreams", "", "", fmt.Errorf("expected a mapping of upstream names, got %s", yamlKind(sec)))
		return
	}
	c.Upstreams = make(map[string]Upstream, len(m))
	for _, name := range sortedKeys(m) {
		u := DefaultUpstream()
		path := "upstreams." + name
		if m[name] != nil {
			if _, ok := m[name].(map[string]any); !ok {
				p.add(path, "", "", fmt.Errorf("expected a mapping, got %s", yamlKind(m[name])))
				continue
			}
			sub := splitTargets(p, path, m[name].(map[string]any), &u)
			if err := decodeInto(sub, &u, path); err != nil {
				p.addAll(err, "", "")
			}
		}
		c.Upstreams[name] = u
	}
}

func decodeRoutes(p *problems, sec any, c *Config) {
	if sec == nil {
		return
	}
	list, ok := sec.([]any)
	if !ok {
		p.add("routes", "", "", fmt.Errorf("expected a list of routes, got %s", yamlKind(sec)))
		return
	}
	for i, item := range list {
		path := fmt.Sprintf("routes[%d]", i)
		m, ok := item.(map[string]any)
		if !ok {
			p.add(path, "", "", fmt.Errorf("expected a route mapping, got %s", yamlKind(item)))
			continue
		}
		// Filters are taken out before decoding: their config keeps the key case as written,
		// and mapstructure must not see them as unknown keys.
		rest := make(map[string]any, len(m))
		var filters, retries any
		filtersKey, retriesKey := "", ""
		for k, v := range m {
			if strings.EqualFold(k, "filters") {
				filters, filtersKey = v, k
				continue
			}
			// A route's retries block is decoded on top of the defaults, not from zero.
			if strings.EqualFold(k, "retries") {
				retries, retriesKey = v, k
				continue
			}
			rest[k] = v
		}
		var r Route
		err := decodeInto(rest, &r, path)
		if err != nil {
			p.addAll(err, r.Name, "")
		}
		if retriesKey != "" {
			rt := DefaultRetries()
			if err := decodeInto(retries, &rt, path+"."+retriesKey); err != nil {
				p.addAll(err, r.Name, "")
			}
			r.Retries = &rt
		}
		for j, meth := range r.Match.Methods {
			r.Match.Methods[j] = strings.ToUpper(meth)
		}
		if filtersKey != "" {
			r.Filters = decodeFilters(p, path+"."+filtersKey, r.Name, filters)
		}
		c.Routes = append(c.Routes, r)
	}
}

// splitTargets accepts target items written as "host:port" or as {addr, weight} mappings: it
// returns sub with the targets list reduced to addresses, and fills u.Weights when any item has
// a weight. Problems are reported under path.
func splitTargets(p *problems, path string, sub map[string]any, u *Upstream) map[string]any {
	key := ""
	for k := range sub {
		if strings.EqualFold(k, "targets") {
			key = k
		}
	}
	list, ok := sub[key].([]any)
	if key == "" || !ok {
		return sub
	}
	addrs := make([]any, len(list))
	weights := make([]int, len(list))
	weighted := false
	for i, item := range list {
		ipath := fmt.Sprintf("%s.targets[%d]", path, i)
		weights[i] = 1
		obj, isMap := item.(map[string]any)
		if !isMap {
			addrs[i] = item
			continue
		}
		var t struct {
			Addr   string `mapstructure:"addr"`
			Weight *int   `mapstructure:"weight"`
		}
		if err := decodeInto(obj, &t, ipath); err != nil {
			p.addAll(err, "", "")
		}
		if t.Addr == "" {
			p.add(ipath+".addr", "", "", errors.New(`is missing; write {addr: "host:port", weight: 2}`))
		}
		addrs[i] = t.Addr
		if t.Weight != nil {
			weights[i] = *t.Weight
			weighted = true
		}
	}
	out := make(map[string]any, len(sub))
	for k, v := range sub {
		out[k] = v
	}
	out[key] = addrs
	if weighted {
		u.Weights = weights
	}
	return out
}

// decodeFilters reads a route's filter list: each item is a one-key mapping from the filter
// name to its config (null or a mapping), or, as a shorthand, the bare filter name.
func decodeFilters(p *problems, path, route string, sec any) []FilterConfig {
	if sec == nil {
		return nil
	}
	list, ok := sec.([]any)
	if !ok {
		p.add(path, route, "", fmt.Errorf("expected a list of filters, got %s", yamlKind(sec)))
		return nil
	}
	var out []FilterConfig
	for j, item := range list {
		ipath := fmt.Sprintf("%s[%d]", path, j)
		switch x := item.(type) {
		case string:
			out = append(out, FilterConfig{Name: x})
		case map[string]any:
			if len(x) != 1 {
				if len(x) == 0 {
					p.add(ipath, route, "", errors.New("empty filter item; write `- name: {config}`"))
				} else {
					p.add(ipath, route, "", fmt.Errorf("a filter item must have exactly one key, the filter name, found %d (%s)",
						len(x), strings.Join(sortedKeys(x), ", ")))
				}
				continue
			}
			for name, cfg := range x {
				fc := FilterConfig{Name: name}
				switch cv := cfg.(type) {
				case nil:
				case map[string]any:
					fc.Config = cv
				default:
					p.add(ipath, route, name, fmt.Errorf("filter config must be a mapping, got %s", yamlKind(cfg)))
					continue
				}
				out = append(out, fc)
			}
		default:
			p.add(ipath, route, "", fmt.Errorf("expected a `name: {config}` mapping, got %s", yamlKind(item)))
		}
	}
	return out
}

// mustDuration parses a duration constant of this package.
func mustDuration(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("config: bad built-in duration %q", s))
	}
	return d
}
