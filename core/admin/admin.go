// Package admin serves the gateway's admin API on its own listener (loopback by default):
// health and readiness, the running config with secrets redacted, the route table, reloads and
// their history, counters. It is deliberately separate from the data-plane listener so that it
// can never be reached through a route and its traffic never competes with proxied requests.
// README.md is the reference for people; openapi.json, served at /openapi.json, for programs.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"mime"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Server is the admin API of one engine.
type Server struct {
	eng       *engine.Engine
	token     []byte
	hosts     []string // lower case
	srv       *fasthttp.Server
	endpoints map[string]endpoint
}

// Options configure an admin server.
type Options struct {
	// Token, when not empty, must be sent as "Authorization: Bearer <token>" on every request
	// (server.admin_token).
	Token string
	// Hosts are names accepted in the Host header besides loopback names and addresses and the
	// address the request arrived on (server.admin_hosts).
	Hosts []string
	// Pprof serves Go's profiler under /debug/pprof/ (server.admin_pprof); 404 otherwise.
	Pprof bool
	// ReadTimeout bounds reading a request from its first byte, so a client that sends part of
	// one cannot hold a connection; WriteTimeout bounds writing the answer, and IdleTimeout how
	// long a keep-alive connection waits for the next request. Zero takes the defaults below.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// Admin requests are a request line and a few headers, answered from memory (a CPU profile is
// computed before the write deadline starts), so these are generous.
const (
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultIdleTimeout  = 60 * time.Second
	// No endpoint reads a body; this only bounds what a client can make the server buffer.
	maxBodyBytes = 64 << 10
	// Connections are few (an operator, a monitoring scraper); more is a misbehaving client.
	maxConns = 256
)

// An endpoint answers one path, or with a path ending in "/" (other than "/" itself) every
// path below it. Its one-line description for the index comes from openapi.json.
type endpoint struct {
	method string
	fn     func(*fasthttp.RequestCtx)
}

// public are the endpoints that answer without the token: probes that say only whether the
// gateway is up, for orchestrators and load balancers that cannot hold a secret. The check is
// on the exact path that is then dispatched, after fasthttp's normalisation (percent-decoding,
// dot segments, repeated slashes), so no spelling of another path can pass as one of these.
var public = map[string]bool{"/healthz": true, "/readyz": true}

// New returns an admin server for eng.
func New(eng *engine.Engine, opts Options, log zerolog.Logger) *Server {
	a := &Server{eng: eng, token: []byte(opts.Token)}
	for _, h := range opts.Hosts {
		a.hosts = append(a.hosts, strings.ToLower(strings.Trim(h, "[]")))
	}
	a.endpoints = map[string]endpoint{
		"/":             {"GET", a.index},
		"/openapi.json": {"GET", a.openapi},
		"/healthz":      {"GET", a.healthz},
		"/readyz":       {"GET", a.readyz},
		"/config":       {"GET", a.config},
		"/routes":       {"GET", a.routes},
		"/reload":       {"POST", a.reload},
		"/reloads":      {"GET", a.reloads},
		"/stats":        {"GET", a.stats},
		"/metrics":      {"GET", a.metrics},
		// Every target of every upstream: healthy, ejected until …, or unhealthy, with its
		// in-flight requests, latency estimate and last active check.
		"/upstreams": {"GET", a.upstreams},
		// Removes stored responses from every cache: {"key": "host/path?query"},
		// {"prefix": "host/path/"} or {"tag": "name"} (filters/cache/README.md).
		"/cache/purge": {"POST", a.purge},
	}
	if opts.Pprof {
		// Go's profiler, for CPU and heap profiles of a live gateway.
		a.endpoints["/debug/pprof/"] = endpoint{"GET", pprofhandler.PprofHandler}
	}
	a.srv = &fasthttp.Server{
		Handler:               a.handle,
		Name:                  "weir-admin",
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{log},
		ReadTimeout:           orDefault(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:          orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:           orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		MaxRequestBodySize:    maxBodyBytes,
		Concurrency:           maxConns,
	}
	return a
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Serve answers on ln until Shutdown. Like the gateway's plain listeners, it answers a bare-LF
// request head or a connection that does not start like HTTP/1 (a TLS handshake) with 400 at
// once instead of at the read timeout (edge.GuardPlain).
func (a *Server) Serve(ln net.Listener) error { return a.srv.Serve(edge.GuardPlain(ln)) }

// Shutdown stops the admin listener.
func (a *Server) Shutdown() error { return a.srv.Shutdown() }

func (a *Server) handle(rc *fasthttp.RequestCtx) {
	if !a.hostAllowed(rc) {
		// A browser sends the name it resolved: a name other than the admin listener's is a web
		// page that rebound its own DNS name to this address (DNS rebinding), or a mistake.
		writeJSON(rc, fasthttp.StatusForbidden, map[string]string{
			"error": "host not accepted by the admin api; use a loopback address or localhost, or list the name in server.admin_hosts"})
		return
	}
	path, method := string(rc.Path()), string(rc.Method())
	if path == "/console" || strings.HasPrefix(path, consolePrefix) {
		// The console's files hold no data (the page fetches every figure with the token), and
		// the page has to load to ask for the token; the Host check above still applies.
		console(rc)
		return
	}
	if path == "/" && prefersHTML(rc.Request.Header.Peek("Accept")) {
		// A browser opening the admin address gets the console, which asks for the token
		// itself; a browser cannot send one on navigation. The redirect says nothing.
		rc.Response.Header.Set("Location", consolePrefix)
		rc.SetStatusCode(fasthttp.StatusSeeOther)
		return
	}
	key, ep, ok := a.lookup(path)
	if len(a.token) > 0 && !(ok && public[key]) && !a.authorized(rc) {
		rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="weir-admin"`)
		writeJSON(rc, fasthttp.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	if !safeMethod(rc.Method()) {
		if status, msg := crossSite(rc); status != 0 {
			writeJSON(rc, status, map[string]string{"error": msg})
			return
		}
	}
	switch {
	case !ok:
		writeJSON(rc, fasthttp.StatusNotFound, map[string]string{"error": "no such admin endpoint; GET / lists them"})
	case method != ep.method && !(ep.method == "GET" && method == "HEAD"):
		rc.Response.Header.Set("Allow", allow(ep.method))
		writeJSON(rc, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use " + ep.method})
	default:
		ep.fn(rc)
	}
}

// lookup finds the endpoint of path: its own, or that of the nearest enclosing subtree.
func (a *Server) lookup(path string) (string, endpoint, bool) {
	if ep, ok := a.endpoints[path]; ok {
		return path, ep, true
	}
	for i := strings.LastIndexByte(path, '/'); i > 0; i = strings.LastIndexByte(path[:i], '/') {
		if ep, ok := a.endpoints[path[:i+1]]; ok {
			return path[:i+1], ep, true
		}
	}
	return "", endpoint{}, false
}

func allow(method string) string {
	if method == "GET" {
		return "GET, HEAD"
	}
	return method
}

func (a *Server) authorized(rc *fasthttp.RequestCtx) bool {
	h := rc.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return false
	}
	return subtle.ConstantTimeCompare(h[len(prefix):], a.token) == 1
}

// hostAllowed reports whether the request names the admin listener: in its Host header and,
// for an absolute request target, in that too.
func (a *Server) hostAllowed(rc *fasthttp.RequestCtx) bool {
	if !allowedHost(rc.Request.Header.Host(), rc.LocalAddr(), a.hosts) {
		return false
	}
	if u := rc.URI().Host(); len(u) > 0 && !allowedHost(u, rc.LocalAddr(), a.hosts) {
		return false
	}
	return true
}

// allowedHost reports whether host ("name", "name:port", "[v6]:port") names this listener:
// localhost, a loopback address, the address the connection arrived on (local), or one of
// names. The port is not checked: rebinding is about names, and a port forward may change it.
func allowedHost(host []byte, local net.Addr, names []string) bool {
	name, ok := splitHost(string(host))
	if !ok {
		return false
	}
	if config.LoopbackHost(name) {
		return true
	}
	// An address cannot be rebound: a page on http://10.0.0.5:9901/ has that address as its
	// origin. Only the address this connection was accepted on is taken, not any address.
	if ip, err := netip.ParseAddr(name); err == nil {
		if ta, isTCP := local.(*net.TCPAddr); isTCP {
			if la, ok := netip.AddrFromSlice(ta.IP); ok && la.Unmap() == ip.Unmap() {
				return true
			}
		}
	}
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// splitHost returns the host of a Host header value without port or brackets; ok is false for
// an empty or malformed value.
func splitHost(h string) (string, bool) {
	name, port, hasPort := h, "", false
	if rest, isV6 := strings.CutPrefix(h, "["); isV6 {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", false
		}
		name, rest = rest[:end], rest[end+1:]
		if a, err := netip.ParseAddr(name); err != nil || !a.Is6() {
			return "", false
		}
		if rest != "" {
			if port, hasPort = strings.CutPrefix(rest, ":"); !hasPort {
				return "", false
			}
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		name, port, hasPort = h[:i], h[i+1:], true
	}
	if name == "" || (hasPort && !validPort(port)) {
		return "", false
	}
	return name, true
}

// validPort accepts 1 to 5 decimal digits up to 65535, no sign.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n <= 65535
}

// safeMethod reports whether the method only reads; every other one changes state and must
// come from the operator, not from a web page the operator has open.
func safeMethod(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions:
		return true
	}
	return false
}

// crossSite refuses a state-changing request a web page could have sent (cross-site request
// forgery), answering the status and message to send, or 0. A page can POST a form or a
// "simple" fetch to any address without the browser asking first, but only with a form or text
// content type; a JSON content type makes the browser ask the admin API first (CORS preflight),
// which it never allows. Origin and Sec-Fetch-Site, sent by browsers, refuse what is left (a
// page on another port or a sibling site); curl and scripts send neither and pass.
func crossSite(rc *fasthttp.RequestCtx) (int, string) {
	if site := rc.Request.Header.Peek("Sec-Fetch-Site"); len(site) > 0 {
		if s := string(site); !strings.EqualFold(s, "same-origin") && !strings.EqualFold(s, "none") {
			return fasthttp.StatusForbidden, "cross-site request refused (Sec-Fetch-Site: " + s + ")"
		}
	}
	if origin := rc.Request.Header.Peek("Origin"); len(origin) > 0 && !sameOrigin(string(origin), string(rc.Request.Header.Host())) {
		return fasthttp.StatusForbidden, "cross-origin request refused; the admin api accepts state changes from its own origin only"
	}
	mt, _, err := mime.ParseMediaType(string(rc.Request.Header.ContentType()))
	if err != nil || mt != "application/json" {
		return fasthttp.StatusUnsupportedMediaType, "send Content-Type: application/json (curl -H 'Content-Type: application/json' -XPOST …)"
	}
	return 0, ""
}

// sameOrigin reports whether origin (an Origin header: "http://127.0.0.1:9901") is the origin
// of a request with this Host header: same host, same port (the scheme's default when not
// written). The scheme may be http or https, since the admin API may sit behind a proxy that
// terminates TLS; no other server can hold the same host and port. "null" (sandboxed pages,
// file: URLs) and anything that is not exactly scheme://host[:port] are not.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.Host == "" {
		return false
	}
	defPort := "80"
	if u.Scheme == "https" {
		defPort = "443"
	}
	oPort := u.Port()
	if oPort == "" {
		oPort = defPort
	}
	hName, ok := splitHost(host)
	if !ok || !strings.EqualFold(strings.Trim(u.Hostname(), "[]"), hName) {
		return false
	}
	hPort := defPort
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		hPort = host[i+1:]
	}
	return oPort == hPort
}

// healthz is liveness: the process answers. It says nothing else, since it needs no token.
func (a *Server) healthz(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, map[string]string{"status": "ok"})
}

// readyz is readiness: a config is loaded and built, the proxy listener accepts, and no
// shutdown has begun. A draining gateway answers 503 so that a load balancer stops sending it
// new requests while in-flight ones finish.
func (a *Server) readyz(rc *fasthttp.RequestCtx) {
	if err := a.eng.Ready(); err != nil {
		writeJSON(rc, fasthttp.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(rc, fasthttp.StatusOK, map[string]string{"status": "ready"})
}

// config shows the config in effect and, when the file on disk says something else, the
// file's too: a reload not applied yet (rejected: file_error), or settings that apply only at
// start (restart_required). Both are redacted.
func (a *Server) config(rc *fasthttp.RequestCtx) {
	type configView struct {
		Running         any      `json:"running"`
		File            any      `json:"file,omitempty"`
		FileError       string   `json:"file_error,omitempty"`
		RestartRequired []string `json:"restart_required,omitempty"`
	}
	running := a.eng.Running()
	out := configView{Running: view(running.Redacted())}
	if running.File != "" {
		// Parsed and validated only (no filter is built): cheap enough for a GET, and enough to
		// compare. A config whose filters fail to build shows up in /reloads once reloaded.
		file, err := config.Load(running.File)
		switch {
		case err != nil:
			out.FileError = config.RedactText(err.Error())
		case file.Hash != a.eng.Config().Hash || len(engine.RestartOnly(running, file)) > 0:
			out.File = view(file.Redacted())
			out.RestartRequired = engine.RestartOnly(running, file)
		}
	}
	writeJSON(rc, fasthttp.StatusOK, out)
}

func (a *Server) routes(rc *fasthttp.RequestCtx) {
	type routeView struct {
		Name     string `json:"name"`
		Match    any    `json:"match"`
		Upstream string `json:"upstream"`
		// Split is the route's traffic split, when it has one instead of an upstream.
		Split   any      `json:"split,omitempty"`
		Filters []string `json:"filters"`
	}
	// Match headers may name secret values (a shared key a route requires).
	cfg := a.eng.Config().Redacted()
	out := make([]routeView, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		v := routeView{Name: r.Name, Match: r.Match, Upstream: r.Upstream, Split: view(r.Split), Filters: []string{}}
		for _, f := range r.Filters {
			v.Filters = append(v.Filters, f.Name)
		}
		out = append(out, v)
	}
	writeJSON(rc, fasthttp.StatusOK, out)
}

func (a *Server) reload(rc *fasthttp.RequestCtx) {
	ev, err := a.eng.Reload("admin")
	status := fasthttp.StatusOK
	if err != nil {
		// The running config stays in place; 422 says the new one was understood but rejected.
		status = fasthttp.StatusUnprocessableEntity
	}
	writeJSON(rc, status, ev)
}

func (a *Server) reloads(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, map[string]any{"stats": a.eng.Stats(), "history": a.eng.History()})
}

func (a *Server) upstreams(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, a.eng.Upstreams())
}

func (a *Server) purge(rc *fasthttp.RequestCtx) {
	var r filter.PurgeRequest
	dec := json.NewDecoder(strings.NewReader(string(rc.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		writeJSON(rc, fasthttp.StatusBadRequest, map[string]string{"error": "want a JSON object with one of key, prefix or tag"})
		return
	}
	set := 0
	for _, v := range []string{r.Key, r.Prefix, r.Tag} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		writeJSON(rc, fasthttp.StatusBadRequest, map[string]string{"error": "give exactly one of key, prefix or tag"})
		return
	}
	writeJSON(rc, fasthttp.StatusOK, map[string]any{"purged": filter.Purge(r)})
}

func (a *Server) stats(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, map[string]any{
		"engine": a.eng.Stats(), "shared_objects": a.eng.Shared().Len(), "filters": filter.Names(),
		// Per plugin name: calls, traps, timeouts, pool waits, live instances (plugins/README.md).
		"plugins":          telemetry.Metrics.Group("plugins"),
		"plugin_instances": telemetry.Metrics.Sum("plugins", "instances"),
		// Per breaker name: state (0 closed, 1 open, 2 half-open), opened, rejected, probes
		// (filters/breaker/README.md).
		"breakers": telemetry.Metrics.Group("breakers"),
		// Per route: requests sent to each side of its split (config/README.md, Routes).
		"split": telemetry.Metrics.Group("split"),
		// Per route: queued, sent, failed, dropped, skipped copies (filters/mirror/README.md).
		"mirror": telemetry.Metrics.Group("mirror"),
		// Per route: hits, misses, stored, revalidated, stale, coalesced, bypass, too_large,
		// and the store's bytes and entries (filters/cache/README.md).
		"cache": telemetry.Metrics.Group("cache"),
		// Per route: open, total, closed_idle, refused_cap WebSocket tunnels (core/engine/README.md).
		"websocket": telemetry.Metrics.Group("websocket"),
	})
}

func writeJSON(rc *fasthttp.RequestCtx, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = fasthttp.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.SetBody(append(b, '\n'))
}

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn().Str("component", "admin").Msgf(format, args...)
}
