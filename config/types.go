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
	Log       Log                 `mapstructure:"log" json:"log"`
	Tracing   Tracing             `mapstructure:"tracing" json:"tracing"`
	Upstreams map[string]Upstream `mapstructure:"upstreams" json:"upstreams"`
	Routes    []Route             `mapstructure:"routes" json:"routes"`
	// Plugins are the WebAssembly plugins by name; each name is a filter name for routes.
	Plugins map[string]Plugin `mapstructure:"-" json:"plugins,omitempty"`
	// Consumers are the callers auth filters identify (see consumers.go).
	Consumers []Consumer `mapstructure:"-" json:"consumers,omitempty"`

	// lines maps key paths ("routes[2].match") to their line in File, for error messages.
	lines map[string]int
	// listenList records that the file wrote server.listen as a list, so that messages name
	// a listener by its index even when there is one.
	listenList bool
}

// Server holds listener settings. They apply at start only; a reload that changes them is
// reported and otherwise ignored (see RestartOnly).
type Server struct {
	// Listen are the proxy listeners. The file may give one address ("host:port", whose TLS
	// is server.tls) or a list of listeners (see Listener); either way it decodes to a list.
	Listen []Listener `mapstructure:"-" json:"listen"`
	// Admin is the admin API listener; empty disables it. Loopback by default.
	Admin string `mapstructure:"admin" json:"admin"`
	// AdminToken, when set, is required as "Authorization: Bearer <token>" on the admin API.
	// Secret: set it with WEIR_SERVER_ADMIN_TOKEN rather than in the file.
	AdminToken string `mapstructure:"admin_token" json:"admin_token"`
	// AdminHosts are host names, besides loopback names and addresses and the admin listener's
	// own address, that the admin API accepts in the Host header (a name it is reached by, such
	// as "weir-admin.internal"). Any other Host is refused, so a web page on a name whose DNS
	// an attacker controls cannot be rebound to the admin listener.
	AdminHosts []string `mapstructure:"admin_hosts" json:"admin_hosts"`
	// AdminInsecure allows an admin listener on a non-loopback address without AdminToken.
	// Without it such a config is invalid: anyone who can reach the address could reload the
	// gateway and read its config.
	AdminInsecure bool `mapstructure:"admin_insecure" json:"admin_insecure"`
	// AdminPprof serves Go's profiler under /debug/pprof/ on the admin API (behind its token).
	// Off by default: a profile shows code paths and memory contents an operator did not ask to
	// expose, and a CPU profile costs CPU while it runs.
	AdminPprof bool `mapstructure:"admin_pprof" json:"admin_pprof"`

	DrainTimeout time.Duration `mapstructure:"drain_timeout" json:"drain_timeout"`
	ReadTimeout  time.Duration `mapstructure:"read_timeout" json:"read_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout" json:"write_timeout"`
	IdleTimeout  time.Duration `mapstructure:"idle_timeout" json:"idle_timeout"`
	// IdleParkAfter is how long a keep-alive connection waits with its buffers and goroutine
	// before it is parked without them until its next request or IdleTimeout
	// (core/edge/park.go); 0 keeps them until IdleTimeout.
	IdleParkAfter time.Duration `mapstructure:"idle_park_after" json:"idle_park_after"`

	MaxHeaderBytes int  `mapstructure:"max_header_bytes" json:"max_header_bytes"`
	MaxBodyBytes   Size `mapstructure:"max_body_bytes" json:"max_body_bytes"`
	MaxConns       int  `mapstructure:"max_conns" json:"max_conns"`
	MaxConnsPerIP  int  `mapstructure:"max_conns_per_ip" json:"max_conns_per_ip"`
	// MaxTunnels caps the WebSocket tunnels open at once over every route. A tunnel's
	// connection has left the server's accounting (MaxConns), so this is its own bound.
	MaxTunnels int `mapstructure:"max_tunnels" json:"max_tunnels"`

	// BodyTimeout bounds how long a request body may take to arrive in full, counted from the
	// end of its header; 0 leaves only ReadTimeout, counted from the request's first byte.
	BodyTimeout time.Duration `mapstructure:"body_timeout" json:"body_timeout"`
	// BodyBufferBytes is how much of a request body is read into memory before the route's
	// filters and plugins run and an upstream connection is taken, so that a slow client holds
	// neither while its body trickles in. Larger bodies stream from there; 0 streams at once.
	BodyBufferBytes Size `mapstructure:"body_buffer_bytes" json:"body_buffer_bytes"`

	// TrustedProxies lists CIDRs whose X-Forwarded-* headers are kept and extended; from any
	// other peer they are replaced.
	TrustedProxies []string `mapstructure:"trusted_proxies" json:"trusted_proxies"`
	// StripClientHeaders are removed from the requests of peers not in TrustedProxies: fields
	// that name the client or rewrite the URL, which upstream frameworks believe. [] strips none.
	StripClientHeaders []string `mapstructure:"strip_client_headers" json:"strip_client_headers"`
	// Via is the pseudonym added to the Via header; empty disables Via.
	Via string `mapstructure:"via" json:"via"`
	// PluginCacheDir holds compiled WebAssembly plugins across restarts: "" is
	// <user cache dir>/weir/wasm, "off" compiles in memory only.
	PluginCacheDir string `mapstructure:"plugin_cache_dir" json:"plugin_cache_dir"`
	// Metrics records every request in the Prometheus families of /metrics (route, status,
	// duration, bytes). Off leaves /metrics with the component counters only; it exists to
	// measure what recording costs (bench/compare.sh).
	Metrics bool `mapstructure:"metrics" json:"metrics"`
	// TLS, when set, terminates TLS on the listener of a single-address server.listen (a
	// list gives each listener its own tls); it is that listener's TLS too.
	TLS *ServerTLS `mapstructure:"tls" json:"tls,omitempty"`
	// HTTP2 is HTTP/2 from clients; it applies at start only, like the listener.
	HTTP2 HTTP2 `mapstructure:"http2" json:"http2"`
}

// HTTP2 configures HTTP/2 from clients: "h2" by ALPN on a TLS listener, and h2c with prior
// knowledge (RFC 9113 section 3.3) on a plain one. Every stream is served by the same edge
// checks, routes, filters and plugins as an HTTP/1.1 request. The limits bound what one
// connection may cost; a client over a flood limit gets GOAWAY (ENHANCE_YOUR_CALM).
type HTTP2 struct {
	// Enabled offers h2 by ALPN on a TLS listener (next to http/1.1).
	Enabled bool `mapstructure:"enabled" json:"enabled"`
	// H2C accepts HTTP/2 with prior knowledge on a plain listener; HTTP/1.1 keeps working there.
	H2C bool `mapstructure:"h2c" json:"h2c"`
	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have
	// open at once. A stream over it is reset (REFUSED_STREAM or PROTOCOL_ERROR).
	MaxConcurrentStreams int `mapstructure:"max_concurrent_streams" json:"max_concurrent_streams"`
	// MaxResetsPerSecond, MaxPingsPerSecond and MaxSettingsPerSecond are the RST_STREAM, PING
	// and SETTINGS frames a client may send per second on one connection, averaged over ten
	// seconds (a burst of ten seconds' worth is allowed). Resets bound the rapid-reset attack
	// (CVE-2023-44487), pings and settings the floods of frames the server must answer.
	MaxResetsPerSecond   int `mapstructure:"max_resets_per_second" json:"max_resets_per_second"`
	MaxPingsPerSecond    int `mapstructure:"max_pings_per_second" json:"max_pings_per_second"`
	MaxSettingsPerSecond int `mapstructure:"max_settings_per_second" json:"max_settings_per_second"`
	// MaxContinuationFrames bounds the CONTINUATION frames of one header block (the
	// CVE-2024-27316 class of floods: endless, possibly empty, CONTINUATION frames). The header
	// list itself is bounded by server.max_header_bytes.
	MaxContinuationFrames int `mapstructure:"max_continuation_frames" json:"max_continuation_frames"`
}

// AccessLog configures the one-line-per-request log (JSON, or human-readable: see Log.Format).
type AccessLog struct {
	Enabled bool `mapstructure:"enabled" json:"enabled"`
	// Output is "stdout", "stderr" or a file path.
	Output string `mapstructure:"output" json:"output"`
	// Sample logs one request in N (1 logs all). Errors (status >= 500) are always logged.
	Sample int `mapstructure:"sample" json:"sample"`
	// Fields are the fields each line carries, from AccessLogFields; empty (the default) means
	// all of them. Lines list them in AccessLogFields' order.
	Fields []string `mapstructure:"fields" json:"fields,omitempty"`
}

// AccessLogFields are the names access_log.fields accepts, in the order a line has them. The
// access log (core/telemetry) writes the same fields; a test keeps the two lists equal.
var AccessLogFields = []string{
	"time", "client", "host", "method", "path", "query", "status", "upstream", "upstream_status",
	"duration_ms", "upstream_duration_ms", "bytes_in", "bytes_out", "user_agent", "request_id",
	"trace_id", "consumer", "route", "error",
}

// Log configures the gateway's own log (stderr) and the format of the access log. It applies at
// start only.
type Log struct {
	// Level is the least severe message logged: debug, info, warn or error.
	Level string `mapstructure:"level" json:"level"`
	// Format is auto (human-readable on a terminal, JSON otherwise), json or console.
	Format string `mapstructure:"format" json:"format"`
}

// LogLevels and LogFormats are what log.level and log.format accept.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"auto", "json", "console"}
)

// Upstream is a named pool of backend targets.
type Upstream struct {
	// Kind is "" or "http" for real backends, or "echo" for the built-in demo backend that
	// answers in-process (useful for `make run` and tests).
	Kind string `mapstructure:"kind" json:"kind"`
	// Targets are "host:port" addresses; a host name is resolved and re-resolved every
	// DNSRefresh, and "srv:_service._proto.name" is an SRV lookup. In the file an item may also
	// be a mapping {addr, weight}; its weight lands in Weights.
	Targets []string `mapstructure:"targets" json:"targets"`
	// Weights is parallel to Targets (1 where the file gave a plain string), or nil when no
	// target has a weight.
	Weights []int `mapstructure:"-" json:"weights,omitempty"`
	// Balance is the load-balancing algorithm, one of Balancers.
	Balance string `mapstructure:"balance" json:"balance"`
	// HashOn is consistent_hash's key: client_ip, header:<name> or cookie:<name>.
	HashOn string `mapstructure:"hash_on" json:"hash_on,omitempty"`
	// BoundedLoad is consistent_hash's load factor (>= 1): a target takes at most this many times
	// its fair share of in-flight requests before keys spill to the next one.
	BoundedLoad float64 `mapstructure:"bounded_load" json:"bounded_load,omitempty"`
	// DNSRefresh is how often name targets are resolved again; 0 dials names as written.
	DNSRefresh time.Duration `mapstructure:"dns_refresh" json:"dns_refresh"`

	ConnectTimeout time.Duration `mapstructure:"connect_timeout" json:"connect_timeout"`
	// Timeout bounds the wait for the upstream's response headers (time to first byte), and any
	// pause of a streamed response body.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
	// RequestTimeout bounds the whole request, retries and body included; 0 means no bound
	// beyond Timeout.
	RequestTimeout time.Duration `mapstructure:"request_timeout" json:"request_timeout"`
	// IdleTimeout closes pooled keep-alive connections unused for this long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" json:"idle_timeout"`
	// MaxConns caps connections per target; MaxConnWait bounds how long a request waits for one.
	MaxConns    int           `mapstructure:"max_conns" json:"max_conns"`
	MaxConnWait time.Duration `mapstructure:"max_conn_wait" json:"max_conn_wait"`

	Health  Health       `mapstructure:"health" json:"health"`
	Outlier Outlier      `mapstructure:"outlier" json:"outlier"`
	Retries Retries      `mapstructure:"retries" json:"retries"`
	TLS     *UpstreamTLS `mapstructure:"tls" json:"tls,omitempty"`
}

// Health configures active health checks of an upstream's targets; they are off without a
// Path (kind http) or a kind grpc.
type Health struct {
	// Kind is http (GET Path, the default) or grpc (grpc.health.v1.Health/Check over HTTP/2).
	Kind string `mapstructure:"kind" json:"kind,omitempty"`
	// Service is the service a grpc check asks about; empty asks about the whole server.
	Service string `mapstructure:"service" json:"service,omitempty"`
	Path    string `mapstructure:"path" json:"path,omitempty"`
	// Host is the Host header of the check; empty uses the target.
	Host string `mapstructure:"host" json:"host,omitempty"`
	// Expect lists healthy statuses; empty means any 2xx or 3xx.
	Expect   []int         `mapstructure:"expect" json:"expect,omitempty"`
	Interval time.Duration `mapstructure:"interval" json:"interval"`
	Timeout  time.Duration `mapstructure:"timeout" json:"timeout"`
	// Jitter adds up to this much, at random, to each interval.
	Jitter             time.Duration `mapstructure:"jitter" json:"jitter"`
	HealthyThreshold   int           `mapstructure:"healthy_threshold" json:"healthy_threshold"`
	UnhealthyThreshold int           `mapstructure:"unhealthy_threshold" json:"unhealthy_threshold"`
}

// Outlier configures passive health checking: targets failing real requests are ejected for a
// growing cooldown. A zero threshold disables that trigger.
type Outlier struct {
	Consecutive5xx             int           `mapstructure:"consecutive_5xx" json:"consecutive_5xx"`
	ConsecutiveConnectFailures int           `mapstructure:"consecutive_connect_failures" json:"consecutive_connect_failures"`
	BaseEjection               time.Duration `mapstructure:"base_ejection" json:"base_ejection"`
	MaxEjection                time.Duration `mapstructure:"max_ejection" json:"max_ejection"`
	MaxEjectedPercent          int           `mapstructure:"max_ejected_percent" json:"max_ejected_percent"`
}

// Retries configures retries of failed requests; only safe ones are ever retried.
type Retries struct {
	// Attempts is the number of retries after the first try; 0 disables retries.
	Attempts int `mapstructure:"attempts" json:"attempts"`
	// Backoff is the first wait, doubled per retry up to MaxBackoff, with full jitter.
	Backoff    time.Duration `mapstructure:"backoff" json:"backoff"`
	MaxBackoff time.Duration `mapstructure:"max_backoff" json:"max_backoff"`
	// Budget caps retries at this fraction of requests (10 s window), plus
	// MinRetriesPerSecond. A negative budget disables the cap.
	Budget              float64 `mapstructure:"budget" json:"budget"`
	MinRetriesPerSecond int     `mapstructure:"min_retries_per_second" json:"min_retries_per_second"`
	// OnGatewayError also retries idempotent, body-less requests answered 502, 503 or 504.
	OnGatewayError bool `mapstructure:"on_gateway_error" json:"on_gateway_error"`
}

// UpstreamTLS configures TLS from the gateway to an upstream's targets.
type UpstreamTLS struct {
	CAFile     string `mapstructure:"ca_file" json:"ca_file,omitempty"`
	ServerName string `mapstructure:"server_name" json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any certificate; for lab use only, and loudly warned about.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify" json:"insecure_skip_verify,omitempty"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `mapstructure:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string `mapstructure:"key_file" json:"key_file,omitempty"`
}

// ServerTLS terminates TLS on the proxy listener. The certificate is chosen by SNI among
// Certificates, then the names ACME manages, then the first of Certificates; files are
// reloaded when they change.
type ServerTLS struct {
	Certificates []Certificate `mapstructure:"certificates" json:"certificates"`
	// ACME, when set, obtains and renews certificates from an ACME CA (Let's Encrypt by
	// default) for the names it lists; Certificates may then be empty.
	ACME *ACME `mapstructure:"acme" json:"acme,omitempty"`
	// StrictSNIHost refuses with 421 a request whose Host the certificate of its connection
	// does not cover: "auto" (the default) for hosts that have a certificate of their own,
	// "always" for every host, "never" to allow any.
	StrictSNIHost string `mapstructure:"strict_sni_host" json:"strict_sni_host,omitempty"`
}

// Strict SNI host modes for ServerTLS.StrictSNIHost.
const (
	StrictSNIAuto   = "auto"
	StrictSNIAlways = "always"
	StrictSNINever  = "never"
)

// ACME obtains certificates automatically (RFC 8555) and renews them in the background.
type ACME struct {
	// Email is the account's contact, where the CA sends expiry warnings; may be empty.
	Email string `mapstructure:"email" json:"email,omitempty"`
	// CA is the directory URL: "" or "production" is Let's Encrypt, "staging" its staging
	// CA (untrusted certificates, generous rate limits), anything else an https:// URL.
	CA string `mapstructure:"ca" json:"ca,omitempty"`
	// CARoot is a PEM file of roots trusted for the CA's own HTTPS endpoint besides the
	// system's, for a private CA.
	CARoot string `mapstructure:"ca_root" json:"ca_root,omitempty"`
	// Storage is the directory of account keys, certificates and locks; "" is
	// <user config dir>/weir/acme. Several gateways sharing it share certificates.
	Storage string `mapstructure:"storage" json:"storage,omitempty"`
	// Hosts are obtained (or loaded from Storage) at start and kept renewed.
	Hosts []string `mapstructure:"hosts" json:"hosts,omitempty"`
	// OnDemand obtains a certificate during the first handshake for a name it allows.
	OnDemand *OnDemand `mapstructure:"on_demand" json:"on_demand,omitempty"`
	// Challenges are the validation methods offered: http-01 (needs a plain listener on port
	// 80 as the CA sees it) and tls-alpn-01 (the TLS listener on 443). Empty offers both.
	Challenges []string `mapstructure:"challenges" json:"challenges,omitempty"`
	// AgreeTOS accepts the CA's terms of service; it must be true.
	AgreeTOS bool `mapstructure:"agree_tos" json:"agree_tos"`
}

// OnDemand is ACME issuance at handshake time, for names only an allow-list admits.
type OnDemand struct {
	// Allow lists host names and "*.example.com" patterns (one label) that may get a
	// certificate on demand. A name it does not cover never causes an ACME order.
	Allow []string `mapstructure:"allow" json:"allow"`
	// Timeout bounds a handshake waiting for its certificate (default 30s).
	Timeout time.Duration `mapstructure:"timeout" json:"timeout,omitempty"`
}

// ACME challenge types for ACME.Challenges, and ACME.CA shortcuts.
const (
	ACMEProduction     = "production"
	ACMEStaging        = "staging"
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Certificate is one PEM certificate chain and its key.
type Certificate struct {
	CertFile string `mapstructure:"cert_file" json:"cert_file"`
	KeyFile  string `mapstructure:"key_file" json:"key_file"`
}

// Route sends matching requests through its filters to its upstream.
type Route struct {
	Name     string `mapstructure:"name" json:"name"`
	Match    Match  `mapstructure:"match" json:"match"`
	Upstream string `mapstructure:"upstream" json:"upstream"`
	// Split, instead of Upstream, spreads the route's requests over several upstreams.
	Split   *Split         `mapstructure:"split" json:"split,omitempty"`
	Filters []FilterConfig `mapstructure:"-" json:"filters"`
	// Timeout, RequestTimeout and Retries, when set, override the upstream's for this route.
	// A route's retries block replaces the upstream's whole block.
	Timeout        *time.Duration `mapstructure:"timeout" json:"timeout,omitempty"`
	RequestTimeout *time.Duration `mapstructure:"request_timeout" json:"request_timeout,omitempty"`
	Retries        *Retries       `mapstructure:"retries" json:"retries,omitempty"`
	// NormalizePath false routes this route on the path exactly as received and forwards it
	// unchanged, for upstreams that need what normalising changes or refuses (an encoded "/").
	// By default (true) every path is normalised at the edge: see config/README.md.
	NormalizePath *bool `mapstructure:"normalize_path" json:"normalize_path,omitempty"`
	// AllowTrace lets TRACE requests reach the route. By default TRACE matches no route and is
	// answered 405: it echoes the request, credentials included, to whoever made a client send it.
	AllowTrace bool `mapstructure:"allow_trace" json:"allow_trace,omitempty"`
	// WebSocket tunes how the route proxies WebSocket handshakes; nil takes the defaults
	// (enabled, DefaultWebSocketIdleTimeout, no per-route cap).
	WebSocket *WebSocket `mapstructure:"websocket" json:"websocket,omitempty"`
}

// WebSocket configures a route's WebSocket tunnels. WebSockets are on by default, as in
// Traefik, Kong and Caddy: the handshake runs through the route's filters like any request.
type WebSocket struct {
	// Enabled false answers a handshake with 403 instead of proxying it.
	Enabled *bool `mapstructure:"enabled" json:"enabled,omitempty"`
	// IdleTimeout closes a tunnel in which no byte moved either way for this long; 0 means
	// DefaultWebSocketIdleTimeout.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" json:"idle_timeout,omitempty"`
	// MaxTunnels caps the route's open tunnels (0: only server.max_tunnels applies); a
	// handshake over the cap is answered 503 before the upstream is dialled.
	MaxTunnels int `mapstructure:"max_tunnels" json:"max_tunnels,omitempty"`
}

// DefaultWebSocketIdleTimeout is a tunnel's idle timeout unless its route sets one: Envoy's
// stream idle timeout. Clients that keep a connection open longer send pings.
const DefaultWebSocketIdleTimeout = 5 * time.Minute

// WebSocketEnabled reports whether the route proxies WebSocket handshakes.
func (r *Route) WebSocketEnabled() bool {
	return r.WebSocket == nil || r.WebSocket.Enabled == nil || *r.WebSocket.Enabled
}

// Split spreads a route's requests over upstreams: by weight (a canary), by a header or cookie
// naming the upstream (blue/green, testers opting in), and sticky by a cookie holding the
// client's place in the weights, so a client stays on one side while the weights do not change.
type Split struct {
	Upstreams []SplitUpstream `mapstructure:"upstreams" json:"upstreams"`
	// Header and Cookie, when the request carries them with the name of one of Upstreams,
	// send it there whatever the weights.
	Header string `mapstructure:"header" json:"header,omitempty"`
	Cookie string `mapstructure:"cookie" json:"cookie,omitempty"`
	// Sticky keeps each client on its side across requests.
	Sticky *Sticky `mapstructure:"sticky" json:"sticky,omitempty"`
}

// SplitUpstream is one side of a split: an upstream and its share of the requests.
type SplitUpstream struct {
	Upstream string `mapstructure:"upstream" json:"upstream"`
	Weight   int    `mapstructure:"weight" json:"weight"`
}

// Sticky names the cookie that keeps a client's place in the weights, and how long it lasts.
type Sticky struct {
	Cookie string        `mapstructure:"cookie" json:"cookie"`
	TTL    time.Duration `mapstructure:"ttl" json:"ttl"`
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

// Health check kinds for Health.Kind; empty means HealthHTTP.
const (
	HealthHTTP = "http"
	HealthGRPC = "grpc"
)

// Upstream kinds.
const (
	// KindHTTP forwards to Targets over HTTP/1.1. An empty Kind means KindHTTP.
	KindHTTP = "http"
	// KindEcho answers in-process with a description of the request; it takes no targets.
	KindEcho = "echo"
	// KindGRPC forwards gRPC (and gRPC-Web, translated) to Targets over HTTP/2: h2c, or TLS
	// when the upstream has tls.
	KindGRPC = "grpc"
)

// Load-balancing algorithms for Upstream.Balance, the names of the balance package. An empty
// Balance means round robin.
const (
	BalanceRoundRobin         = "round_robin"
	BalanceWeightedRoundRobin = "weighted_round_robin"
	BalanceRandom             = "random"
	BalanceLeastRequest       = "least_request"
	BalanceLeastConn          = "least_conn"
	BalanceP2C                = "p2c"
	BalanceConsistentHash     = "consistent_hash"
)

// Kinds and Balancers list the accepted values of Upstream.Kind and Upstream.Balance.
var (
	Kinds     = []string{KindHTTP, KindEcho, KindGRPC}
	Balancers = []string{BalanceRoundRobin, BalanceWeightedRoundRobin, BalanceRandom, BalanceLeastRequest,
		BalanceLeastConn, BalanceP2C, BalanceConsistentHash}
)

// Size is a byte count written as an integer or with a unit: 512KiB, 10MiB, 1GiB, 1MB.
type Size int64
