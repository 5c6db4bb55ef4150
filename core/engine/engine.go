// Package engine runs the gateway: a fasthttp server whose handler matches each request to a
// route of the current snapshot and runs that route's pipeline. Reloads build a complete new
// snapshot off to the side and publish it with one atomic store; requests already running
// finish on the snapshot they started on, whose resources are released after the last one.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/acme"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/core/telemetry/tracing"
)

// ReloadEvent is one entry of the reload history shown by the admin API.
type ReloadEvent struct {
	Time    time.Time `json:"time"`
	Trigger string    `json:"trigger"`
	OK      bool      `json:"ok"`
	// Unchanged is true when the new config hashed the same as the running one (a no-op).
	Unchanged bool   `json:"unchanged,omitempty"`
	Hash      string `json:"hash,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Stats are the engine's counters.
type Stats struct {
	FramingRejected uint64 `json:"framing_rejected"`
	NotFound        uint64 `json:"not_found"` // no route matched: answered 404, or 405 with Allow
	Reloads         uint64 `json:"reloads"`
	ReloadFailures  uint64 `json:"reload_failures"`
	AccessLogDrops  uint64 `json:"access_log_dropped"`
}

const historyLen = 64

// Engine is one running gateway.
type Engine struct {
	path   string
	log    zerolog.Logger
	shared *filter.Shared
	cur    atomic.Pointer[snapshot]
	// cfg is the config of cur, kept after Shutdown empties cur: the admin API, which stops
	// after the engine, may still ask for it. boot is the first config, whose restart-only
	// settings (RestartOnly) stay in effect whatever later reloads say.
	cfg  atomic.Pointer[config.Config]
	boot *config.Config
	// The listeners of server.listen, in order, each with its own fasthttp server; fixed at
	// start. Serve serves a listener made by the caller as the first.
	listeners []*listener
	h2        *h2front             // nil when no listener speaks HTTP/2
	access    *telemetry.AccessLog // nil when disabled; fixed at start like the listeners
	maxBody   int                  // server.max_body_bytes; fixed at start
	// metrics records every request in the Prometheus families (telemetry.Prom); noRoute
	// holds those of requests no route answered. Only the engine's benchmarks turn it off, to
	// measure what recording costs.
	metrics bool
	noRoute *telemetry.RouteMetrics
	tracer  *tracing.Tracer // nil when disabled; fixed at start (trace.go)

	// Request bodies (see readBody); fixed at start like the listeners.
	bodyTimeout time.Duration
	bodyBuffer  int
	// acme obtains and renews certificates (tls.acme of the TLS listeners, which share it), nil
	// otherwise. It starts with the first Serve or ServeListeners, so no validation arrives
	// before anyone listens, and answers http-01 validations ahead of routing.
	acme *acme.Manager
	// Idle keep-alive connections are parked (edge.Park) when park.After is set; fixed at start.
	park edge.ParkOptions

	reloadMu sync.Mutex // serialises reloads; never taken on the request path
	histMu   sync.Mutex
	history  []ReloadEvent

	// Counters of rare events only: a counter bumped by every request would be one cache line
	// bounced between all cores.
	framing, notFound, reloads, reloadFails atomic.Uint64

	// stopping is set when Shutdown starts, serveAll when ServeListeners serves every listener
	// (rather than Serve the first). Readiness (see Ready) needs the listeners serving and no
	// shutdown under way.
	stopping, serveAll atomic.Bool

	ctxPool sync.Pool // of *request

	tunnels tunnels // open WebSocket tunnels (websocket.go)
}

// New loads the config at path, builds the first snapshot and prepares the server. It does not
// listen yet; see Serve.
func New(path string, log zerolog.Logger) (*Engine, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return NewFromConfig(cfg, log)
}

// NewFromConfig is New for a config already loaded with LoadConfig (Reload reads cfg.File).
func NewFromConfig(cfg *config.Config, log zerolog.Logger) (*Engine, error) {
	e := &Engine{
		path: cfg.File, log: log, shared: filter.NewShared(), boot: cfg,
		bodyTimeout: cfg.Server.BodyTimeout, bodyBuffer: int(cfg.Server.BodyBufferBytes),
		metrics: cfg.Server.Metrics, noRoute: telemetry.Route(""),
		maxBody: int(cfg.Server.MaxBodyBytes),
	}
	e.tunnels.max = int64(cfg.Server.MaxTunnels)
	e.ctxPool.New = func() any {
		r := &request{tunnels: &e.tunnels}
		r.wsStep = r.forwardWebSocket // bound once, so a handshake allocates no closure for it
		return r
	}
	if err := e.newListeners(cfg); err != nil {
		e.stopACME()
		return nil, err
	}
	s, err := build(cfg, e.shared, log)
	if err != nil {
		e.stopACME()
		return nil, err
	}
	if cfg.AccessLog.Enabled {
		if e.access, err = telemetry.NewAccessLog(telemetry.AccessLogOptions{
			Output: cfg.AccessLog.Output, Sample: cfg.AccessLog.Sample,
			Fields: cfg.AccessLog.Fields, Format: cfg.Log.Format,
		}); err != nil {
			s.close()
			e.stopACME()
			return nil, err
		}
	}
	if e.tracer, err = newTracer(cfg, log); err != nil {
		s.close()
		e.stopACME()
		return nil, errors.Join(err, e.closeAccessLog())
	}
	e.cur.Store(s)
	e.cfg.Store(cfg)
	e.record(ReloadEvent{Time: time.Now(), Trigger: "start", OK: true, Hash: cfg.Hash})
	telemetry.ConfigApplied(cfg.Hash, false)
	return e, nil
}

// newServer is the fasthttp server of one listener; handler serves its requests.
func (e *Engine) newServer(sc config.Server, handler fasthttp.RequestHandler) *fasthttp.Server {
	srv := &fasthttp.Server{
		Handler:      handler,
		ErrorHandler: e.parseError,
		Name:         "weir",
		// Filters and the proxy see bodies as streams; nothing buffers a large upload whole.
		StreamRequestBody:                  true,
		ReadTimeout:                        sc.ReadTimeout,
		WriteTimeout:                       sc.WriteTimeout,
		IdleTimeout:                        sc.IdleTimeout,
		ReadBufferSize:                     sc.MaxHeaderBytes, // fasthttp: the header must fit the read buffer
		MaxRequestBodySize:                 int(sc.MaxBodyBytes),
		Concurrency:                        sc.MaxConns,
		MaxConnsPerIP:                      sc.MaxConnsPerIP,
		NoDefaultServerHeader:              true,
		NoDefaultContentType:               true,
		DisablePreParseMultipartForm:       true,
		CloseOnShutdown:                    true,
		SleepWhenConcurrencyLimitsExceeded: 0,
		Logger:                             fasthttpLogger{e.log},
	}
	// fasthttp's idle timeout, as IdleTimeout 0 is: ReadTimeout.
	idle := cmp.Or(sc.IdleTimeout, sc.ReadTimeout)
	if sc.IdleParkAfter > 0 && (idle == 0 || sc.IdleParkAfter < idle) {
		// The server gives up on an idle connection after IdleParkAfter, and the Parker
		// keeps it (edge.Park), counting every open connection against the limits.
		e.park = edge.ParkOptions{After: sc.IdleParkAfter, Idle: idle, MaxConns: sc.MaxConns, MaxConnsPerIP: sc.MaxConnsPerIP,
			Resolution: deadlineResolution(sc)}
		srv.IdleTimeout = sc.IdleParkAfter
		srv.MaxConnsPerIP = 0
		// edge.ConnState: ParkConnState through the TLS guard that wraps the Parker.
		srv.ConnState = edge.ConnState
	}
	return srv
}

// deadlineResolution is how late the server's read, write and idle deadlines may fire
// (edge.ParkOptions.Resolution): a tenth of the shortest of them, between 1 ms and 100 ms. With
// the defaults (parking after 1 s, 30 s read and write timeouts) a keep-alive connection parks
// 1.0 to 1.1 s after its last request and a slow request times out 0 to 100 ms after 30 s.
func deadlineResolution(sc config.Server) time.Duration {
	shortest := sc.IdleParkAfter
	for _, d := range []time.Duration{sc.ReadTimeout, sc.WriteTimeout, sc.BodyTimeout} {
		if d > 0 {
			shortest = min(shortest, d)
		}
	}
	return min(max(shortest/10, time.Millisecond), 100*time.Millisecond)
}

// Config returns the running config; after Shutdown, the last one that ran.
func (e *Engine) Config() *config.Config { return e.cfg.Load() }

// Ready reports whether the gateway is serving traffic: its config is loaded and built, its
// listeners are accepting (every one of server.listen under ServeListeners, the first under
// Serve), and no shutdown has begun. The error says what is missing. A rejected reload does
// not make it unready: the running config keeps serving.
func (e *Engine) Ready() error {
	serving, waiting := 0, ""
	for _, l := range e.listeners {
		if l.serving.Load() {
			serving++
		} else if waiting == "" {
			waiting = l.name
		}
	}
	switch {
	case e.stopping.Load():
		return errors.New("shutting down")
	case e.cur.Load() == nil:
		return errors.New("no config loaded")
	case serving == 0:
		return errors.New("no listener serving yet")
	case e.serveAll.Load() && waiting != "":
		return fmt.Errorf("%s not serving yet", waiting)
	}
	return nil
}

// Shared exposes the cross-snapshot store (for tests and the admin API).
func (e *Engine) Shared() *filter.Shared { return e.shared }

// Serve accepts connections on ln, as server.listen's first listener, until Shutdown. It
// returns nil after a clean shutdown. ln is served as it is: TLS and PROXY protocol are the
// caller's (Listen and ServeListeners serve the configured listeners with both). Plain
// connections that do not start like an HTTP/1 request (a TLS handshake sent to a plain
// listener) are answered 400 at once (edge.GuardPlain), and so are requests whose head has a
// bare-LF line end or whose chunk extensions are too long, on plain and TLS connections
// (edge.GuardPlain, edge.GuardTLS).
func (e *Engine) Serve(ln net.Listener) error {
	e.startACME()
	l := e.listeners[0]
	return l.serve(edge.GuardTLS(e.parked(edge.GuardPlain(e.h2.listener(ln, l)))))
}

// parked puts the Parker (edge.Park) around a listener's socket when idle connections are
// parked. It is outermost: HTTP/2 connections have left at the h2 listener, and the
// connections it wakes go straight back to the server.
func (e *Engine) parked(ln net.Listener) net.Listener {
	if e.park.After > 0 {
		return edge.Park(ln, e.park)
	}
	return ln
}

// Shutdown stops accepting on every listener, lets in-flight requests finish until ctx ends,
// then closes the current snapshot and the access log. WebSocket tunnels are asked to end at
// once (proxy.Tunnel.GoAway: a close frame 1001 to the upstream, whose answer reaches the
// client); those still open when ctx ends have their connections closed.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.stopping.Store(true) // not ready from the first moment of a drain
	e.tunnels.drain()
	e.h2.shutdown(ctx) // GOAWAY to HTTP/2 clients, which the servers below wait for too
	err := e.shutdownListeners(ctx)
	e.h2.closeAll()
	err = errors.Join(err, e.tunnels.wait(ctx))
	if s := e.cur.Swap(nil); s != nil {
		s.release(e.log)
	}
	e.stopACME()
	return errors.Join(err, e.closeAccessLog(), e.flushTraces())
}

func (e *Engine) closeAccessLog() error {
	if e.access == nil {
		return nil
	}
	return e.access.Close()
}

// startACME starts certificate issuance and renewal, once.
func (e *Engine) startACME() {
	if e.acme != nil {
		e.acme.Start()
	}
}

// stopACME ends certificate renewal and any issuance in progress.
func (e *Engine) stopACME() {
	if e.acme != nil {
		e.acme.Stop()
	}
}

// listenPort is the port of a listen address, 0 when it has none.
func listenPort(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Reload reads the config file again and, when it is valid and different, swaps it in. trigger
// ("file", "signal", "admin") is recorded in the history. The running snapshot keeps serving on
// any error.
func (e *Engine) Reload(trigger string) (ReloadEvent, error) {
	cfg, err := LoadConfig(e.path)
	if err != nil {
		return e.reloadFailed(trigger, "", err)
	}
	return e.Apply(cfg, trigger)
}

// Apply swaps in an already loaded config (Reload's second half).
func (e *Engine) Apply(cfg *config.Config, trigger string) (ReloadEvent, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	old := e.cur.Load()
	if old == nil {
		return ReloadEvent{}, errors.New("engine is shut down")
	}
	if cfg.Hash == old.cfg.Hash {
		ev := ReloadEvent{Time: time.Now(), Trigger: trigger, OK: true, Unchanged: true, Hash: cfg.Hash}
		e.record(ev)
		telemetry.ConfigUnchanged()
		return ev, nil
	}
	s, err := build(e.tracingAsStarted(cfg), e.shared, e.log)
	if err != nil {
		return e.reloadFailed(trigger, cfg.Hash, err)
	}
	if changed := RestartOnly(e.boot, cfg); len(changed) > 0 {
		e.log.Warn().Strs("settings", changed).Msg("reload: these settings change only on restart; keeping the running ones")
	}
	e.cur.Store(s)
	e.cfg.Store(cfg)
	old.release(e.log)
	for _, l := range e.listeners {
		if l.certs != nil {
			l.certs.Recheck() // certificate files may have been renewed with the config
		}
	}
	e.reloads.Add(1)
	telemetry.ConfigApplied(cfg.Hash, true)
	ev := ReloadEvent{Time: time.Now(), Trigger: trigger, OK: true, Hash: cfg.Hash}
	e.record(ev)
	e.log.Info().Str("trigger", trigger).Str("hash", cfg.Hash).Msg("config reloaded")
	return ev, nil
}

func (e *Engine) reloadFailed(trigger, hash string, err error) (ReloadEvent, error) {
	e.reloadFails.Add(1)
	telemetry.ConfigFailed()
	// Config errors arrive redacted (config.RedactError); this catches credentials in any other
	// error text before it reaches the history, the admin API and the log.
	msg := config.RedactText(err.Error())
	ev := ReloadEvent{Time: time.Now(), Trigger: trigger, Hash: hash, Error: msg}
	e.record(ev)
	e.log.Error().Str("error", msg).Str("trigger", trigger).Msg("config reload rejected; keeping the running config")
	return ev, err
}

// restartSections are the config sections fixed when the gateway starts (listeners, timeouts,
// the admin API, the access log writer, the logger, the tracer), except the server settings in
// perSnapshot, which every snapshot reads, so that a reload applies them.
var (
	restartSections = []string{"server", "access_log", "log", "tracing"}
	perSnapshot     = map[string]bool{"trusted_proxies": true, "strip_client_headers": true, "via": true}
)

// RestartOnly lists the settings that differ between a and b but apply only at start, as key
// paths ("server.drain_timeout", "access_log.output"), in declaration order.
func RestartOnly(a, b *config.Config) []string {
	var out []string
	restartFields(a, b, func(key string, x, y reflect.Value) {
		if !sameValue(x, y) {
			out = append(out, key)
		}
	})
	return out
}

// restartFields calls fn with the key path and the two values of each restart-only setting of
// a and b. Reflection keeps the list complete when a setting is added to those sections.
func restartFields(a, b *config.Config, fn func(key string, x, y reflect.Value)) {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		section := keyOf(va.Type().Field(i))
		if !slices.Contains(restartSections, section) {
			continue
		}
		sa, sb := va.Field(i), vb.Field(i)
		for j := range sa.NumField() {
			key := keyOf(sa.Type().Field(j))
			if section == "server" && perSnapshot[key] {
				continue
			}
			fn(section+"."+key, sa.Field(j), sb.Field(j))
		}
	}
}

// keyOf is a config field's key as in the file and the admin API's /config: its JSON name
// (some fields, decoded by hand like server.listen, have no mapstructure name).
func keyOf(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// sameValue is reflect.DeepEqual, except that a nil and an empty list or map are the same
// setting.
func sameValue(x, y reflect.Value) bool {
	if (x.Kind() == reflect.Slice || x.Kind() == reflect.Map) && x.Len() == 0 && y.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(x.Interface(), y.Interface())
}

// Running returns the config in effect: the last one applied, with the settings RestartOnly
// names as the gateway started with them. Config returns the last one applied as written.
func (e *Engine) Running() *config.Config {
	cur := e.cfg.Load()
	if len(RestartOnly(e.boot, cur)) == 0 {
		return cur
	}
	cp := *cur
	restartFields(&cp, e.boot, func(_ string, dst, src reflect.Value) { dst.Set(src) })
	return &cp
}

func (e *Engine) record(ev ReloadEvent) {
	e.histMu.Lock()
	defer e.histMu.Unlock()
	if len(e.history) == historyLen {
		copy(e.history, e.history[1:])
		e.history = e.history[:historyLen-1]
	}
	e.history = append(e.history, ev)
}

// History returns the reload history, oldest first.
func (e *Engine) History() []ReloadEvent {
	e.histMu.Lock()
	defer e.histMu.Unlock()
	return append([]ReloadEvent(nil), e.history...)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := Stats{
		FramingRejected: e.framing.Load(),
		NotFound:        e.notFound.Load(),
		Reloads:         e.reloads.Load(),
		ReloadFailures:  e.reloadFails.Load(),
	}
	if e.access != nil {
		st.AccessLogDrops = e.access.Dropped()
	}
	return st
}

// acquire returns the current snapshot with a reference held, or nil after Shutdown.
func (e *Engine) acquire() *snapshot {
	for {
		s := e.cur.Load()
		if s == nil || s.acquire() {
			return s
		}
	}
}

// Handle serves one request as server.listen's first listener does.
func (e *Engine) Handle(rc *fasthttp.RequestCtx) { e.handle(rc, e.listeners[0]) }

// handle serves one request that arrived on listener l. It is the fasthttp handler.
func (e *Engine) handle(rc *fasthttp.RequestCtx, l *listener) {
	// The server read the clock when the request's header arrived; a clock read costs over a
	// hundred nanoseconds on some VMs, so only a RequestCtx not from a server pays for another.
	start := rc.Time()
	if start.IsZero() && (e.access != nil || e.metrics) {
		start = time.Now()
	}
	if err := edge.CheckVersion(&rc.Request.Header); err != nil {
		e.framing.Add(1)
		e.reject(rc, fasthttp.StatusHTTPVersionNotSupported, err, start)
		return
	}
	if err := edge.CheckFraming(rc); err != nil {
		e.framing.Add(1)
		e.reject(rc, fasthttp.StatusBadRequest, err, start)
		return
	}
	if err := e.limitBody(rc); err != nil {
		e.reject(rc, fasthttp.StatusRequestEntityTooLarge, err, start)
		return
	}
	r := e.ctxPool.Get().(*request)
	// The edge checks the method, target and Host and puts the path in normal form, once: the
	// router, filters, plugins, upstream and access log all see what it leaves (edge.Edge).
	tg, buf, err := edge.Edge(rc, r.norm)
	r.norm = buf
	if err != nil {
		e.ctxPool.Put(r)
		e.framing.Add(1)
		e.reject(rc, fasthttp.StatusBadRequest, err, start)
		return
	}
	if e.acme != nil && e.acme.ServeHTTPChallenge(rc) {
		e.ctxPool.Put(r)
		return
	}
	if l.sniCheck && l.misdirected(rc) {
		e.ctxPool.Put(r)
		e.reject(rc, fasthttp.StatusMisdirectedRequest, errMisdirected, start)
		return
	}
	// Before Sanitize, which removes Upgrade with the other hop-by-hop fields.
	upgrade, err := edge.CheckUpgrade(&rc.Request.Header)
	if err != nil {
		e.ctxPool.Put(r)
		e.rejectUpgrade(rc, err, start)
		return
	}
	s := e.acquire()
	if s == nil {
		e.ctxPool.Put(r)
		reply(rc, fasthttp.StatusServiceUnavailable)
		rc.SetConnectionClose() // after reply: resetting the response clears the flag
		return
	}
	defer s.release(e.log)

	client := edge.Sanitize(rc, s.trusted)
	c := &r.Ctx
	c.Reset(rc, "")
	c.SetClientIP(client)
	if l.redirect != nil && l.redirect.OnRequest(c) == filter.Stop {
		// redirect_https: answered before routing, once the edge has checked the Host and
		// settled X-Forwarded-Proto.
		if e.access != nil {
			r.path = append(r.path[:0], tg.Path...)
		}
		// Its span begins once it is answered, so that a request routed instead (a trusted
		// proxy's X-Forwarded-Proto: https) has one span, begun below.
		e.beginTrace(r, "")
		e.done(r, e.noRoute, start)
		return
	}
	params, n := c.ParamStore()
	// Routes match the normal form of the path, and raw routes (if any) the path as received;
	// the request-target is then set to the path the winner matched, so that is the path
	// everything after sees and the upstream receives. The Host field is the one host: the
	// edge made an absolute-form authority into it.
	host := rc.Request.Header.Host()
	id, path := -1, tg.Path
	if s.table.HasRaw() {
		// The raw path lives in the request's header buffer, which writing the request
		// upstream overwrites; parameters captured from it must stay valid for the whole
		// request (filter.Param), so it is matched from a copy the request owns, as the
		// normal form already is.
		r.raw = append(r.raw[:0], tg.Raw...)
		tg.Raw = r.raw
		var raw bool
		if id, raw = s.table.MatchPaths(rc.Method(), host, tg.Path, tg.Raw, &rc.Request.Header, params, n); raw {
			path = tg.Raw
		}
	} else if tg.PathErr == nil {
		id = s.table.Match(rc.Method(), host, tg.Path, &rc.Request.Header, params, n)
	}
	if id < 0 && tg.PathErr != nil {
		c.Reset(nil, "")
		e.ctxPool.Put(r)
		e.framing.Add(1)
		e.reject(rc, fasthttp.StatusBadRequest, tg.PathErr, start)
		return
	}
	r.target = edge.SetTarget(rc, &tg, path, r.target)
	if e.access != nil {
		// Filters may rewrite the path; the log reports the one that was routed.
		r.path = append(r.path[:0], path...)
	}
	rm := e.noRoute
	if id < 0 {
		e.beginTrace(r, "")
		e.miss(rc, s, r, &tg, host)
	} else {
		rt := &s.routes[id]
		c.Route, rm = rt.name, rt.metrics
		e.beginTrace(r, rt.name)
		if upgrade == edge.UpgradeWebSocket {
			e.websocket(r, rt)
		} else if status, err := e.routeBody(r, rt); err != nil {
			// Refused like an edge rejection, but counted and logged once, with its route.
			reply(rc, status)
			rc.SetConnectionClose()
			c.SetReason(err.Error())
		} else {
			http10 := !rc.Request.Header.IsHTTP11() // the proxy sends HTTP/1.1 upstream
			rt.pipeline.Run(c, rt.terminal)
			e.closeDelimited(rc, http10)
		}
	}
	e.done(r, rm, start)
}

// done ends the request's trace, records and logs it, and returns its state to the pool.
func (e *Engine) done(r *request, rm *telemetry.RouteMetrics, start time.Time) {
	e.endTrace(r)
	rc := r.RequestCtx
	if e.metrics || e.access != nil {
		d := time.Since(start)
		in, out := bodySizes(rc)
		if e.metrics {
			rm.Record(rc.Method(), rc.Response.StatusCode(), d, in, out)
		}
		e.logAccess(r, d, in, out)
	}
	r.Ctx.Reset(nil, "")
	r.body.rest = nil
	e.ctxPool.Put(r)
}

// miss answers a request no route matched: 405 with Allow when some route would match it with
// another method (RFC 9110 section 15.5.6), else 404.
func (e *Engine) miss(rc *fasthttp.RequestCtx, s *snapshot, r *request, tg *edge.Target, host []byte) {
	e.notFound.Add(1)
	var raw []byte
	if s.table.HasRaw() {
		raw = tg.Raw
	}
	r.allow = s.table.Allowed(r.allow[:0], rc.Method(), host, tg.Path, raw, &rc.Request.Header)
	if len(r.allow) == 0 {
		reply(rc, fasthttp.StatusNotFound)
		return
	}
	reply(rc, fasthttp.StatusMethodNotAllowed)
	rc.Response.Header.SetBytesV(fasthttp.HeaderAllow, r.allow)
}

// reject answers a request that must not be processed further and closes the connection, so
// nothing that followed the bad request on the same connection is interpreted.
// start is when the request arrived, zero when unknown (fasthttp could not parse it).
func (e *Engine) reject(rc *fasthttp.RequestCtx, status int, err error, start time.Time) {
	reply(rc, status)
	// After reply: resetting the response clears the flag, and the connection would stay open
	// for whatever bytes the rejected request left unread.
	rc.SetConnectionClose()
	if e.metrics {
		var d time.Duration
		if !start.IsZero() {
			d = time.Since(start)
		}
		e.noRoute.Record(rc.Method(), status, d, 0, len(rc.Response.Body()))
	}
	if e.access != nil {
		// Refused before the client's address was worked out: the peer's address stands in.
		var client []byte
		if a, ok := netip.AddrFromSlice(rc.RemoteIP()); ok {
			client = a.Unmap().AppendTo(nil)
		}
		e.access.Log(&telemetry.Entry{
			Client: client, Host: rc.Request.Header.Host(), Method: rc.Method(), Path: rc.Path(),
			Status: status, UserAgent: rc.Request.Header.UserAgent(), Err: err.Error(),
		})
	}
}

// limitBody enforces server.max_body_bytes. fasthttp does not when it streams request bodies:
// it streams a declared Content-Length above its limit as it does any other, and never counts
// a chunked body. A declared length above the limit is refused before anything is forwarded;
// a chunked body is cut off where it crosses the limit, which fails the forwarding as a broken
// client body (the upstream connection is closed, so the upstream never sees a whole request).
func (e *Engine) limitBody(rc *fasthttp.RequestCtx) error {
	limit := e.maxBody
	if limit <= 0 {
		return nil
	}
	cl := rc.Request.Header.ContentLength()
	if cl > limit {
		return fmt.Errorf("content-length %d over server.max_body_bytes: %w", cl, fasthttp.ErrBodyTooLarge)
	}
	if cl == -1 && rc.Request.IsBodyStream() {
		// Only chunked requests pay for the wrapper.
		rc.Request.SetBodyStream(&limitedBody{r: rc.Request.BodyStream(), left: int64(limit)}, -1)
	}
	return nil
}

// limitedBody fails a chunked request body once it exceeds the limit.
type limitedBody struct {
	r    io.Reader
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the limit is enough to know it was crossed
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		// fasthttp's error, so the proxy answers 413 rather than a generic bad body.
		return 0, fmt.Errorf("chunked body over server.max_body_bytes: %w", fasthttp.ErrBodyTooLarge)
	}
	return n, err
}

func reply(rc *fasthttp.RequestCtx, status int) {
	rc.Response.Reset()
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.Response.SetBodyString(filter.ErrorBody(status))
}

// parseError answers requests fasthttp itself could not parse (bad request line, header too
// large, body too large, read timeout) with a JSON error, and closes the connection.
func (e *Engine) parseError(rc *fasthttp.RequestCtx, err error) {
	e.framing.Add(1)
	status := fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = fasthttp.StatusRequestEntityTooLarge
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		status = fasthttp.StatusRequestTimeout
	}
	e.reject(rc, status, err, time.Time{})
}

// request is the pooled per-request state: the filters' Ctx and what the engine keeps beside it.
type request struct {
	filter.Ctx
	path   []byte // the path as routed, for the access log; its buffer is reused
	client []byte // the client's address, formatted for the access log
	body   prefixedBody

	// Scratch for the edge: the path's normal form, and the request-target set from it.
	norm, target []byte
	raw          []byte // the raw path, when some route matches on it
	allow        []byte // the Allow field of a 405
	trace        tracing.Request

	// A WebSocket handshake's route, its terminal step (forwardWebSocket, bound once) and the
	// upstream connection that step opened.
	tunnels *tunnels
	ws      *wsRoute
	wsStep  func(*filter.Ctx)
	upConn  net.Conn
}

// bodySizes returns the request and response body lengths for metrics and the access log: a
// streamed body counts its declared length, 0 when it has none (chunked).
func bodySizes(rc *fasthttp.RequestCtx) (in, out int) {
	out = rc.Response.Header.ContentLength()
	if !rc.Response.IsBodyStream() {
		out = len(rc.Response.Body())
	}
	return max(rc.Request.Header.ContentLength(), 0), max(out, 0)
}

func (e *Engine) logAccess(r *request, d time.Duration, in, out int) {
	if e.access == nil {
		return
	}
	c := &r.Ctx
	rc := c.RequestCtx
	r.client = c.ClientIP().AppendTo(r.client[:0])
	var consumer string
	if cs := c.Consumer(); cs != nil {
		consumer = cs.Name
	}
	e.access.Log(&telemetry.Entry{
		Route:            c.Route,
		Client:           r.client,
		Host:             rc.Request.Header.Host(),
		Method:           rc.Method(),
		Path:             r.path,
		Query:            rc.URI().QueryString(), // as forwarded: a filter may have removed a credential
		Status:           rc.Response.StatusCode(),
		Upstream:         c.Upstream,
		UpstreamStatus:   c.UpstreamStatus,
		Duration:         d,
		UpstreamDuration: c.UpstreamTime,
		BytesIn:          in,
		BytesOut:         out,
		UserAgent:        rc.Request.Header.UserAgent(),
		ID:               rc.Request.Header.Peek(e.access.IDHeader()),
		TraceID:          r.trace.TraceID(),
		Consumer:         consumer,
		Err:              c.Reason(),
	})
}

// fasthttpLogger routes fasthttp's internal messages into the structured log.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn().Str("component", "http").Msgf(format, args...)
}

// readBody starts the body clock and reads up to server.body_buffer_bytes of a streamed
// request body into memory, before the route's pipeline runs. Plugin instances and upstream
// connections are shared and few; taking one while a client trickles its body in would let a
// few hundred slow clients hold them all. A body that fits is handed on whole (and framed
// with Content-Length upstream, as nginx does when it buffers); a larger one streams on from
// where the buffer ends, still under the same deadline. On failure it returns the status to
// answer with.
func (e *Engine) readBody(r *request) (int, error) {
	rc := r.RequestCtx
	req := &rc.Request
	if !req.IsBodyStream() || req.Header.ContentLength() == 0 {
		return 0, nil
	}
	if e.bodyTimeout > 0 {
		// fasthttp clears a deadline set through the RequestCtx after the handler, before it
		// reads the next request on the connection.
		if err := rc.SetReadDeadline(time.Now().Add(e.bodyTimeout)); err != nil {
			return fasthttp.StatusBadRequest, fmt.Errorf("set body deadline: %w", err)
		}
	}
	if e.bodyBuffer <= 0 {
		return 0, nil
	}
	stream := req.BodyStream()
	cl := req.Header.ContentLength()
	want := e.bodyBuffer + 1 // one byte past the buffer tells a body that does not fit
	if cl >= 0 && cl <= e.bodyBuffer {
		want = cl
	}
	buf := r.body.buf[:0]
	if cap(buf) < want {
		// Grown to the largest body this pooled request has seen, at most the buffer size.
		buf = make([]byte, 0, want)
	}
	buf = buf[:want]
	n, err := io.ReadFull(stream, buf)
	buf = buf[:n]
	r.body.buf = buf
	switch {
	case err == nil && n == want && n > e.bodyBuffer:
		// Too large to hold: the rest streams behind what was read.
		r.body.rest, r.body.off = stream, 0
		req.SetBodyStream(&r.body, cl)
		return 0, nil
	case err == nil, cl < 0 && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)):
		// A whole body (a chunked one ends before the buffer does).
		req.SetBody(buf)
		req.Header.SetContentLength(n)
		return 0, nil
	}
	return bodyErrorStatus(err), fmt.Errorf("read request body: %w", err)
}

// routeBody is readBody, except for a gRPC call on an HTTP/2 stream: its messages flow to the
// upstream as they arrive (a bidi-streaming client waits for answers before sending more), and
// its length in time is the call's deadline, not the body clock.
func (e *Engine) routeBody(r *request, rt *route) (int, error) {
	if rt.grpc && edge.StreamOf(r.RequestCtx) != nil {
		return 0, nil
	}
	return e.readBody(r)
}

// bodyErrorStatus maps a failed body read to the answer: 408 when the client stopped sending,
// 413 over server.max_body_bytes, else 400 (bad chunked framing, or the client gave up).
func bodyErrorStatus(err error) int {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fasthttp.StatusRequestTimeout
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusBadRequest
}

// prefixedBody is a body stream that first returns what readBody buffered, then the rest of
// the client's stream. It lives in the pooled request, so a large body costs no allocation.
type prefixedBody struct {
	buf  []byte
	off  int
	rest io.Reader
}

func (b *prefixedBody) Read(p []byte) (int, error) {
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		b.off += n
		return n, nil
	}
	return b.rest.Read(p)
}
