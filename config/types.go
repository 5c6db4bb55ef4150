// Package config defines Weir's configuration schema and loads it from YAML: strictly (unknown
// keys are errors), with defaults applied before decoding, environment overrides for secrets and
// cross-reference validation. It imports nothing from core so that tools can read configs alone.
package config

import "time"

// Config is one complete, validated configuration. It is treated as immutable once loaded.
type Config struct {
	// File is the path the config was loaded from ("" when built in code).
	File string `mapstructure:"-" json:"-"`
	// Hash is the sha256 of the effective config (file bytes plus overrides), hex encoded; an
	// unchanged hash makes a reload a no-op.
	Hash string `mapstructure:"-" json:"hash"`

	Server    Server              `mapstructure:"server" json:"server"`
	AccessLog AccessLog           `mapstructure:"access_log" json:"access_log"`
	Upstreams map[string]Upstream `mapstructure:"upstreams" json:"upstreams"`
	Routes    []Route             `mapstructure:"routes" json:"routes"`
	// Plugins are the WebAssembly plugins by name; each name is a filter name for routes.
	Plugins map[string]Plugin `mapstructure:"-" json:"plugins,omitempty"`

	// lines maps key paths ("routes[2].match") to their line in File, for error messages.
	lines map[string]int
}

// Server holds listener settings. They apply at start only; a reload that changes them is
// reported and otherwise ignored (see RestartOnly).
type Server struct {
	Listen string `mapstructure:"listen" json:"listen"`
	// Admin is the admin API listener; empty disables it. Loopback by default.
	Admin string `mapstructure:"admin" json:"admin"`
	// AdminToken, when set, is required as "Authorization: Bearer <token>" on the admin API.
	// Secret: set it with WEIR_SERVER_ADMIN_TOKEN rather than in the file.
	AdminToken string `mapstructure:"admin_token" json:"admin_token"`

	DrainTimeout time.Duration `mapstructure:"drain_timeout" json:"drain_timeout"`
	ReadTimeout  time.Duration `mapstructure:"read_timeout" json:"read_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout" json:"write_timeout"`
	IdleTimeout  time.Duration `mapstructure:"idle_timeout" json:"idle_timeout"`

	MaxHeaderBytes int  `mapstructure:"max_header_bytes" json:"max_header_bytes"`
	MaxBodyBytes   Size `mapstructure:"max_body_bytes" json:"max_body_bytes"`
	MaxConns       int  `mapstructure:"max_conns" json:"max_conns"`
	MaxConnsPerIP  int  `mapstructure:"max_conns_per_ip" json:"max_conns_per_ip"`

	// TrustedProxies lists CIDRs whose X-Forwarded-* headers are kept and extended; from any
	// other peer they are replaced.
	TrustedProxies []string `mapstructure:"trusted_proxies" json:"trusted_proxies"`
	// Via is the pseudonym added to the Via header; empty disables Via.
	Via string `mapstructure:"via" json:"via"`
	// PluginCacheDir holds compiled WebAssembly plugins across restarts: "" is
	// <user cache dir>/weir/wasm, "off" compiles in memory only.
	PluginCacheDir string `mapstructure:"plugin_cache_dir" json:"plugin_cache_dir"`
}

// AccessLog configures the one-line-per-request JSON log.
type AccessLog struct {
	Enabled bool `mapstructure:"enabled" json:"enabled"`
	// Output is "stdout", "stderr" or a file path.
	Output string `mapstructure:"output" json:"output"`
	// Sample logs one request in N (1 logs all). Errors (status >= 500) are always logged.
	Sample int `mapstructure:"sample" json:"sample"`
}

// Upstream is a named pool of backend targets.
type Upstream struct {
	// Kind is "" or "http" for real backends, or "echo" for the built-in demo backend that
	// answers in-process (useful for `make run` and tests).
	Kind    string   `mapstructure:"kind" json:"kind"`
	Targets []string `mapstructure:"targets" json:"targets"`
	// Balance is the load-balancing algorithm: round_robin (the default).
	Balance string `mapstructure:"balance" json:"balance"`

	ConnectTimeout time.Duration `mapstructure:"connect_timeout" json:"connect_timeout"`
	// Timeout bounds the wait for the upstream's response headers.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
	// IdleTimeout closes pooled keep-alive connections unused for this long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" json:"idle_timeout"`
	// MaxConns caps connections per target; MaxConnWait bounds how long a request waits for one.
	MaxConns    int           `mapstructure:"max_conns" json:"max_conns"`
	MaxConnWait time.Duration `mapstructure:"max_conn_wait" json:"max_conn_wait"`
}

// Route sends matching requests through its filters to its upstream.
type Route struct {
	Name     string         `mapstructure:"name" json:"name"`
	Match    Match          `mapstructure:"match" json:"match"`
	Upstream string         `mapstructure:"upstream" json:"upstream"`
	Filters  []FilterConfig `mapstructure:"-" json:"filters"`
}

// Match selects requests. Empty fields match everything; at most one of Path, PathPrefix and
// PathRegex may be set.
type Match struct {
	// Host is an exact host ("api.example.com") or a wildcard ("*.example.com"); no port.
	Host string `mapstructure:"host" json:"host,omitempty"`
	// Path is an exact path; segments written {name} capture a named parameter.
	Path       string   `mapstructure:"path" json:"path,omitempty"`
	PathPrefix string   `mapstructure:"path_prefix" json:"path_prefix,omitempty"`
	PathRegex  string   `mapstructure:"path_regex" json:"path_regex,omitempty"`
	Methods    []string `mapstructure:"methods" json:"methods,omitempty"`
	// Headers maps a header name to the exact value it must have ("*" means present).
	Headers map[string]string `mapstructure:"headers" json:"headers,omitempty"`
}

// FilterConfig is one entry of a route's filter list: `- name: {config}`.
// Config keeps the subtree exactly as written (key case preserved); the filter's own factory
// decodes it strictly.
type FilterConfig struct {
	Name   string         `json:"name"`
	Config map[string]any `json:"config,omitempty"`
}

// Upstream kinds.
const (
	// KindHTTP forwards to Targets over HTTP/1.1. An empty Kind means KindHTTP.
	KindHTTP = "http"
	// KindEcho answers in-process with a description of the request; it takes no targets.
	KindEcho = "echo"
)

// Load-balancing algorithms for Upstream.Balance. An empty Balance means round robin.
const (
	BalanceRoundRobin = "round_robin"
)

// Kinds and Balancers list the accepted values of Upstream.Kind and Upstream.Balance.
var (
	Kinds     = []string{KindHTTP, KindEcho}
	Balancers = []string{BalanceRoundRobin}
)

// Size is a byte count written as an integer or with a unit: 512KiB, 10MiB, 1GiB, 1MB.
type Size int64
