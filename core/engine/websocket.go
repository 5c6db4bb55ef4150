package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/proxy"
	"github.com/weir-gateway/weir/core/telemetry"
)

// WebSocket tunnels. A handshake is a request like any other up to the route's terminal step:
// edge checks, route, filters and plugins (which may answer it: 401, 429, …). The terminal
// step then reserves a place under the caps, dials the upstream and sends the handshake on
// (proxy.Upstream.WebSocket). When the upstream completes it, the gateway sends the 101 on
// and takes the client's connection from the server (fasthttp's Hijack) to splice it with the
// upstream's (proxy.Tunnel). A tunnel holds no snapshot: its settings are copied when it
// opens, so a reload never waits for it and it keeps running on what it started with.

// wsMetricsGroup is the telemetry group of the tunnel counts, one member per route: open (a
// gauge: tunnels open or being opened), total (tunnels opened), closed_idle (ended by the
// idle timeout) and refused_cap (handshakes answered 503 by a cap).
const wsMetricsGroup = "websocket"

func init() {
	telemetry.Metrics.Export(wsMetricsGroup, telemetry.Export{Prefix: "weir_websocket", Member: "route",
		As: map[string]telemetry.As{
			"closed_idle": {Family: "closed", Label: "reason", Value: "idle"},
		},
		Help: map[string]string{
			"open":        "WebSocket tunnels open or being opened, by route.",
			"total":       "WebSocket tunnels opened, by route.",
			"closed":      "WebSocket tunnels closed by the gateway, by route and reason.",
			"refused_cap": "WebSocket handshakes answered 503 because a tunnel cap was reached, by route.",
		}})
}

// wsRoute is one route's WebSocket handling, built with its snapshot.
type wsRoute struct {
	// dial is the terminal step for a handshake (nil: the route refuses WebSockets, 403).
	dial   func(*filter.Ctx) net.Conn
	reason string // why dial is nil
	stats  *wsStats
}

// wsStats is what a tunnel keeps of its route: its limits and counters, which live in
// telemetry.Metrics and so survive reloads (a route's cap counts the tunnels opened under
// every snapshot).
type wsStats struct {
	idle time.Duration
	max  int64
	// count is the route's open tunnels for its cap (nil without one), kept in the shared
	// store so that it survives reloads; open is the same number, published.
	count *wsCount
	// The counters are registered at a route's first handshake, so that /stats and /metrics
	// list only routes that carried WebSockets.
	route                            string
	once                             sync.Once
	open, total, idleClosed, refused *telemetry.Metric
}

func (st *wsStats) register() {
	st.once.Do(func() {
		m := telemetry.Metrics
		st.open = m.Gauge(wsMetricsGroup, st.route, "open")
		st.total = m.Counter(wsMetricsGroup, st.route, "total")
		st.idleClosed = m.Counter(wsMetricsGroup, st.route, "closed_idle")
		st.refused = m.Counter(wsMetricsGroup, st.route, "refused_cap")
	})
}

// wsCount is a route's count of open tunnels (or being opened), shared by its snapshots.
type wsCount struct{ n atomic.Int64 }

func (*wsCount) Close() error { return nil }

func (s *snapshot) newWSRoute(rc *config.Route, shared *filter.Shared, dial func(*filter.Ctx) net.Conn) (*wsRoute, error) {
	st := &wsStats{idle: config.DefaultWebSocketIdleTimeout}
	if w := rc.WebSocket; w != nil {
		if w.IdleTimeout > 0 {
			st.idle = w.IdleTimeout
		}
		st.max = int64(w.MaxTunnels)
	}
	if st.max > 0 {
		v, release, err := shared.Acquire("websocket/"+rc.Name, func() (io.Closer, error) { return new(wsCount), nil })
		if err != nil {
			return nil, err
		}
		s.releases = append(s.releases, release)
		st.count = v.(*wsCount)
	}
	st.route = rc.Name
	ws := &wsRoute{stats: st}
	switch {
	case !rc.WebSocketEnabled():
		ws.reason = "websocket is not enabled on this route"
	case dial == nil:
		ws.reason = "websocket is not available on this route" // an upstream's build failed
	default:
		ws.dial = func(c *filter.Ctx) net.Conn {
			setConsumer(c)
			return dial(c)
		}
	}
	return ws, nil
}

// websocketDial is route i's handshake step to upstream name: the upstream's, or one with the
// route's own timeouts and retries; the demo upstream echoes.
func (s *snapshot) websocketDial(cfg *config.Config, i int, name string) (func(*filter.Ctx) net.Conn, error) {
	if u, ok := cfg.Upstreams[name]; ok && u.Kind == config.KindEcho {
		return proxy.EchoWebSocket, nil
	}
	up := s.upstreams[name]
	if up == nil {
		return nil, nil // the upstream's build failed; that error is reported
	}
	ru, err := s.routeUpstream(cfg, i, up)
	if err != nil || ru == nil {
		return up.WebSocket, err
	}
	return ru.WebSocket, nil
}

// tunnels tracks the open tunnels: their connections left the server's accounting when they
// were hijacked, so fasthttp's Shutdown neither sees nor closes them.
type tunnels struct {
	max  int64
	open atomic.Int64 // tunnels open or being opened, every route together

	mu       sync.Mutex
	live     map[*proxy.Tunnel]struct{}
	draining bool
	wg       sync.WaitGroup
}

var (
	errTunnelCap = errors.New("websocket tunnel cap reached")
	errDraining  = errors.New("gateway is shutting down")
)

// reserve takes a place under the global and the route's caps, before the upstream is dialled.
func (ts *tunnels) reserve(st *wsStats) error {
	st.register()
	ts.mu.Lock()
	draining := ts.draining
	ts.mu.Unlock()
	if draining {
		return errDraining
	}
	if ts.open.Add(1) > ts.max && ts.max > 0 {
		ts.open.Add(-1)
		st.refused.Add(1)
		return errTunnelCap
	}
	if st.count != nil && st.count.n.Add(1) > st.max {
		st.count.n.Add(-1)
		ts.open.Add(-1)
		st.refused.Add(1)
		return errTunnelCap
	}
	st.open.Add(1)
	return nil
}

func (ts *tunnels) unreserve(st *wsStats) {
	st.open.Add(-1)
	if st.count != nil {
		st.count.n.Add(-1)
	}
	ts.open.Add(-1)
}

// add registers t, unless the gateway began to drain since its handshake was reserved.
func (ts *tunnels) add(t *proxy.Tunnel) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.draining {
		return false
	}
	if ts.live == nil {
		ts.live = map[*proxy.Tunnel]struct{}{}
	}
	ts.live[t] = struct{}{}
	ts.wg.Add(1)
	return true
}

func (ts *tunnels) remove(t *proxy.Tunnel) {
	ts.mu.Lock()
	delete(ts.live, t)
	ts.mu.Unlock()
	ts.wg.Done()
}

// drain refuses new tunnels and asks every open one to end (proxy.Tunnel.GoAway).
func (ts *tunnels) drain() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.draining = true
	for t := range ts.live {
		t.GoAway()
	}
}

// wait returns when every tunnel ended, or when ctx ends, after closing those still open.
func (ts *tunnels) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		ts.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	ts.mu.Lock()
	n := len(ts.live)
	for t := range ts.live {
		t.Close()
	}
	ts.mu.Unlock()
	<-done
	return fmt.Errorf("drain websocket tunnels: %d closed at the deadline: %w", n, ctx.Err())
}

// handshakeWrite bounds writing the 101 to the client.
const handshakeWrite = 10 * time.Second

// run is the hijack handler: it sends the client the 101 head the pipeline produced, then
// splices the connections until the tunnel ends.
func (ts *tunnels) run(client, upstream net.Conn, head []byte, st *wsStats) {
	defer ts.unreserve(st)
	t := proxy.NewTunnel(client, upstream, st.idle)
	if !ts.add(t) {
		// Shutdown began between the handshake and now: the client gets a 503, not a tunnel.
		_ = upstream.Close()
		_ = client.SetWriteDeadline(time.Now().Add(handshakeWrite))
		body := filter.ErrorBody(fasthttp.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(client, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		return
	}
	defer ts.remove(t)
	_ = client.SetWriteDeadline(time.Now().Add(handshakeWrite))
	if _, err := client.Write(head); err != nil {
		t.Close()
		return
	}
	_ = client.SetWriteDeadline(time.Time{})
	st.total.Add(1)
	if t.Run() {
		st.idleClosed.Add(1)
	}
}

// forwardWebSocket is the terminal step of a handshake (bound to r once, when r is made):
// it reserves a place under the caps and runs the route's handshake step, keeping the
// upstream connection it returns for Handle.
func (r *request) forwardWebSocket(c *filter.Ctx) {
	st := r.ws.stats
	if err := r.tunnels.reserve(st); err != nil {
		c.Fail(fasthttp.StatusServiceUnavailable, err)
		return
	}
	if r.upConn = r.ws.dial(c); r.upConn == nil {
		r.tunnels.unreserve(st)
	}
}

// websocket serves a WebSocket handshake on route rt.
func (e *Engine) websocket(r *request, rt *route) {
	rc := r.RequestCtx
	// Whatever the answer, the client's connection ends with it unless it becomes a tunnel:
	// a client may send frames right behind its handshake, and they must never be read as a
	// request.
	if rt.ws.dial == nil {
		rc.SetConnectionClose()
		replyUpgrade(rc, &edge.UpgradeError{Status: fasthttp.StatusForbidden, Protocol: "websocket", Reason: rt.ws.reason})
		r.SetReason(rt.ws.reason)
		return
	}
	r.ws = rt.ws
	rt.pipeline.Run(&r.Ctx, r.wsStep)
	up := r.upConn
	r.ws, r.upConn = nil, nil
	if up != nil && rc.Response.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// A response filter replaced the upstream's 101: the client does not get a tunnel.
		_ = up.Close()
		r.tunnels.unreserve(rt.ws.stats)
		up = nil
	}
	if up == nil {
		rc.SetConnectionClose()
		return
	}
	head := rc.Response.Header.AppendBytes(nil)
	st := rt.ws.stats
	tunnels := r.tunnels
	rc.HijackSetNoResponse(true) // the hijack handler always runs, and writes the 101 itself
	rc.Hijack(func(client net.Conn) { tunnels.run(client, up, head, st) })
}

// replyUpgrade answers a refused upgrade with a JSON error naming the protocol.
func replyUpgrade(rc *fasthttp.RequestCtx, ue *edge.UpgradeError) {
	rc.Response.Reset()
	rc.SetStatusCode(ue.Status)
	rc.SetContentType("application/json")
	b, _ := json.Marshal(struct {
		Error    string `json:"error"`
		Status   int    `json:"status"`
		Protocol string `json:"protocol"`
	}{ue.Reason, ue.Status, ue.Protocol})
	rc.Response.SetBody(append(b, '\n'))
	if ue.Status == fasthttp.StatusUpgradeRequired {
		rc.Response.Header.Set("Upgrade", "websocket")
		rc.Response.Header.Set("Sec-WebSocket-Version", edge.WebSocketVersion)
	}
}

// rejectUpgrade answers an upgrade the edge refused (edge.CheckUpgrade) and closes the
// connection.
func (e *Engine) rejectUpgrade(rc *fasthttp.RequestCtx, err error, start time.Time) {
	var ue *edge.UpgradeError
	if !errors.As(err, &ue) {
		e.reject(rc, fasthttp.StatusBadRequest, err, start)
		return
	}
	e.reject(rc, ue.Status, err, start) // counted and logged as any refusal at the edge
	replyUpgrade(rc, ue)
	rc.SetConnectionClose() // after the reply, which resets the response
}
