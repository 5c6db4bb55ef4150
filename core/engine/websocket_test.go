package engine

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry"
)

// wsBackend is a WebSocket echo server (coder/websocket behind net/http) that records the
// handshake headers it saw and counts the messages it read.
type wsBackend struct {
	addr    string
	delay   time.Duration // before each echo
	mu      sync.Mutex
	headers []http.Header
	read    atomic.Int64
}

func startWSBackend(t *testing.T, delay time.Duration) *wsBackend {
	t.Helper()
	b := &wsBackend{delay: delay}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func (b *wsBackend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.headers = append(b.headers, r.Header.Clone())
	b.mu.Unlock()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			// A close frame is answered with the same status (the library does it).
			return
		}
		b.read.Add(1)
		time.Sleep(b.delay)
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

func (b *wsBackend) lastHeader() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.headers) == 0 {
		return nil
	}
	return b.headers[len(b.headers)-1]
}

func (b *wsBackend) handshakes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.headers)
}

const wsConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, max_tunnels: %d }
access_log: { enabled: false }
upstreams:
  # Generous: a thousand handshakes at once on a loaded machine take seconds to answer.
  ws: { targets: [%q], timeout: 15s }
  demo: { kind: echo }
  down: { targets: ["127.0.0.1:1"], timeout: 2s, retries: { attempts: 0 } }
routes:
  - name: ws-%s
    match: { path: /ws }
    upstream: ws
    filters:
      - headers: { request: { set: { X-Version: %q } } }
  - name: denied
    match: { path: /denied }
    upstream: ws
    filters:
      - respond: { status: 401 }
  - name: capped
    match: { path: /capped }
    upstream: ws
    websocket: { max_tunnels: 2 }
  - name: idle
    match: { path: /idle }
    upstream: ws
    websocket: { idle_timeout: 300ms }
  - name: off
    match: { path: /off }
    upstream: ws
    websocket: { enabled: false }
  - name: demo
    match: { path: /demo }
    upstream: demo
  - name: down
    match: { path: /down }
    upstream: down
`

func wsEngine(t *testing.T, be *wsBackend, maxTunnels int, version string) (*Engine, string) {
	t.Helper()
	e := newWSEngine(t, be, maxTunnels, version)
	return e, serve(t, e)
}

func newWSEngine(t *testing.T, be *wsBackend, maxTunnels int, version string) *Engine {
	t.Helper()
	return engineFor(t, fmt.Appendf(nil, wsConfig, maxTunnels, be.addr, version, version))
}

// engineFor builds an engine from a config's text, without serving it.
func engineFor(t *testing.T, text []byte) *Engine {
	t.Helper()
	cfg, err := parseConfig("ws.yaml", text)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wsDial(t *testing.T, addr, path string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// echoes sends n messages on c and checks each comes back.
func echoes(t *testing.T, c *websocket.Conn, tag string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range n {
		want := fmt.Sprintf("%s-%d", tag, i)
		if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
			t.Fatalf("write %s: %v", want, err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != want {
			t.Fatalf("read: got %q, %v; want %q", got, err, want)
		}
	}
}

func wsMetric(route, name string) int64 {
	return telemetry.Metrics.Group("websocket")[route][name]
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWebSocketEcho(t *testing.T) {
	be := startWSBackend(t, 0)
	_, addr := wsEngine(t, be, 100, "echo-1")
	c, _, err := wsDial(t, addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, c, "hello", 10)
	// A binary message larger than one copy buffer.
	big := []byte(strings.Repeat("0123456789abcdef", 1800)) // the upstream reads at most 32 KiB
	ctx := context.Background()
	if err := c.Write(ctx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageBinary || string(got) != string(big) {
		t.Fatalf("big message: %v, %d bytes, err %v", typ, len(got), err)
	}
	// The handshake went through the route's filters and the edge's X-Forwarded-* rules.
	h := be.lastHeader()
	if h.Get("X-Version") != "echo-1" || h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("Via") != "1.1 weir" {
		t.Errorf("upstream handshake headers: %v", h)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	waitFor(t, "the tunnel to close", func() bool { return wsMetric("ws-echo-1", "open") == 0 })
	if got := wsMetric("ws-echo-1", "total"); got != 1 {
		t.Errorf("total = %d, want 1", got)
	}

	// The demo upstream echoes too.
	d, resp, err := wsDial(t, addr, "/demo")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Upstream") != "echo" {
		t.Errorf("demo handshake answer: %v", resp.Header)
	}
	echoes(t, d, "demo", 5)
	// A pong is read by a reader, which then waits for the close.
	closed := make(chan error, 1)
	go func() {
		_, _, err := d.Read(ctx)
		closed <- err
	}()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.Ping(pctx); err != nil {
		t.Errorf("ping through the demo upstream: %v", err)
	}
	if err := d.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close demo: %v", err)
	}
	if err := <-closed; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("demo upstream's close: %v", err)
	}
}

func TestWebSocketFilterAnswersHandshake(t *testing.T) {
	be := startWSBackend(t, 0)
	_, addr := wsEngine(t, be, 100, "filtered")
	_, resp, err := wsDial(t, addr, "/denied")
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial /denied: %v %v, want a 401", resp, err)
	}
	_, resp, err = wsDial(t, addr, "/off")
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial /off: %v %v, want a 403", resp, err)
	}
	_, resp, err = wsDial(t, addr, "/down")
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("dial /down: %v %v, want a 502", resp, err)
	}
	if n := be.handshakes(); n != 0 {
		t.Errorf("upstream saw %d handshakes, want 0", n)
	}
}

func TestWebSocketCaps(t *testing.T) {
	be := startWSBackend(t, 0)
	_, addr := wsEngine(t, be, 3, "caps")
	refused := wsMetric("capped", "refused_cap")
	a, _, err := wsDial(t, addr, "/capped")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := wsDial(t, addr, "/capped"); err != nil {
		t.Fatal(err)
	}
	// The route's cap: 2.
	if _, resp, err := wsDial(t, addr, "/capped"); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third tunnel on the capped route: %v %v, want a 503", resp, err)
	}
	if got := wsMetric("capped", "refused_cap") - refused; got != 1 {
		t.Errorf("refused_cap grew by %d, want 1", got)
	}
	// The global cap: 3.
	if _, _, err := wsDial(t, addr, "/ws"); err != nil {
		t.Fatal(err)
	}
	if _, resp, err := wsDial(t, addr, "/ws"); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("fourth tunnel: %v %v, want a 503", resp, err)
	}
	if n := be.handshakes(); n != 3 {
		t.Errorf("upstream saw %d handshakes, want 3: a refused one is never dialled", n)
	}
	// A closed tunnel frees its place.
	if err := a.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a place on the capped route", func() bool { return wsMetric("capped", "open") == 1 })
	c, _, err := wsDial(t, addr, "/capped")
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	echoes(t, c, "again", 1)
}

func TestWebSocketIdleTimeout(t *testing.T) {
	be := startWSBackend(t, 0)
	_, addr := wsEngine(t, be, 100, "idle")
	before := wsMetric("idle", "closed_idle")
	c, _, err := wsDial(t, addr, "/idle")
	if err != nil {
		t.Fatal(err)
	}
	// Traffic keeps it open past the idle timeout (300ms).
	for range 5 {
		echoes(t, c, "busy", 1)
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read on an idle tunnel: %v, want it closed", err)
	}
	waitFor(t, "the idle count", func() bool { return wsMetric("idle", "closed_idle") == before+1 })
}

// TestWebSocketReload: a tunnel opened before a reload keeps working on the config it started
// with, a new one gets the new config, and the old snapshot retires while the tunnel is open.
func TestWebSocketReload(t *testing.T) {
	be := startWSBackend(t, 0)
	e, addr := wsEngine(t, be, 100, "v1")
	old, _, err := wsDial(t, addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, old, "before", 3)
	s1 := e.cur.Load()
	cfg, err := parseConfig("ws.yaml", []byte(fmt.Sprintf(wsConfig, 100, be.addr, "v2", "v2")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s1.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the old snapshot was not released while a tunnel it opened is open")
	}
	echoes(t, old, "after", 3)
	c, _, err := wsDial(t, addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	if v := be.lastHeader().Get("X-Version"); v != "v2" {
		t.Errorf("new tunnel's handshake X-Version = %q, want v2", v)
	}
	echoes(t, c, "new", 3)
	echoes(t, old, "still", 3)
}

// TestWebSocketDrain: Shutdown ends open tunnels cleanly: every message the upstream read
// before the drain is echoed to the client, then the client gets a close frame 1001.
func TestWebSocketDrain(t *testing.T) {
	be := startWSBackend(t, 20*time.Millisecond) // echoes are still on their way when the drain begins
	e := newWSEngine(t, be, 100, "drain")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const tunnels, msgs = 5, 20
	conns := make([]*websocket.Conn, tunnels)
	for i := range conns {
		c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		conns[i] = c
		for j := range msgs {
			if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "%d-%d", i, j)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "the upstream to read every message", func() bool { return be.read.Load() >= 10 })
	shut := make(chan error, 1)
	go func() { shut <- e.Shutdown(ctx) }()
	for i, c := range conns {
		for j := range msgs {
			_, got, err := c.Read(ctx)
			if want := fmt.Sprintf("%d-%d", i, j); err != nil || string(got) != want {
				t.Fatalf("tunnel %d: got %q, %v; want %q", i, got, err, want)
			}
		}
		_, _, err := c.Read(ctx)
		if st := websocket.CloseStatus(err); st != websocket.StatusGoingAway {
			t.Errorf("tunnel %d ended with %v, want a close frame 1001", i, err)
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

var websocketSoak = flag.Int("websocket-soak", 0,
	"open this many WebSocket tunnels at once through the gateway, echo on each, then drain (make soak: 1000)")

// TestWebSocketManyTunnels: n tunnels open at the same time, each echoing messages, then
// closed by a drain with nothing lost. make test runs it with 50, make soak with 1000.
func TestWebSocketManyTunnels(t *testing.T) {
	n := 50
	if *websocketSoak > 0 {
		n = *websocketSoak
	}
	be := startWSBackend(t, 0)
	e := newWSEngine(t, be, 2*n, "soak")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	start := time.Now()
	conns := make([]*websocket.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+"/ws", nil)
			if err != nil {
				errs <- fmt.Errorf("tunnel %d: %w", i, err)
				return
			}
			conns[i] = c
			for j := range 10 {
				want := fmt.Sprintf("%d-%d", i, j)
				if err := c.Write(ctx, websocket.MessageText, []byte(want)); err != nil {
					errs <- err
					return
				}
				if _, got, err := c.Read(ctx); err != nil || string(got) != want {
					errs <- fmt.Errorf("tunnel %d: got %q, %v; want %q", i, got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := wsMetric("ws-soak", "open"); got != int64(n) {
		t.Errorf("open = %d with every tunnel up, want %d", got, n)
	}
	opened := time.Since(start)
	// One more message on each, then the drain: every echo arrives before the close 1001.
	for i, c := range conns {
		if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "last-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the upstream to read the last messages", func() bool { return be.read.Load() >= int64(11*n) })
	drainStart := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- e.Shutdown(ctx) }()
	for i, c := range conns {
		if _, got, err := c.Read(ctx); err != nil || string(got) != fmt.Sprintf("last-%d", i) {
			t.Fatalf("tunnel %d: got %q, %v", i, got, err)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("tunnel %d ended with %v, want a close frame 1001", i, err)
		}
		c.CloseNow()
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
	t.Logf("%d tunnels opened and echoed 10 messages each in %v; drained in %v", n, opened.Round(time.Millisecond), time.Since(drainStart).Round(time.Millisecond))
}

// TestWebSocketRawUpstreamCloses: bytes an upstream sends in the same segment as its 101 reach
// the client, and its end of stream is passed on: the client sees the end at once, not at the
// idle timeout.
func TestWebSocketRawUpstreamCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if err := readRequest(br); err != nil {
			return
		}
		// The key below answers "dGhlIHNhbXBsZSBub25jZQ==" (RFC 6455 section 1.3).
		// Field names in lower case, as HTTP/2-era servers write them.
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"+
			"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi")
	}()
	_, addr := wsEngine(t, &wsBackend{addr: ln.Addr().String()}, 10, "raw")
	conn, br := dial(t, addr)
	if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	resp.SkipBody = true
	if err := resp.Read(br); err != nil || resp.StatusCode() != 101 {
		t.Fatalf("handshake answer %d, %v", resp.StatusCode(), err)
	}
	n := 0
	for k := range resp.Header.All() {
		if strings.EqualFold(string(k), "Upgrade") || strings.EqualFold(string(k), "Connection") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("101 carries %d Upgrade and Connection fields, want one each:\n%s", n, resp.Header.Header())
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\x81\x02hi" {
		t.Fatalf("after the 101: %q, %v; want the upstream's frame, then the end", rest, err)
	}
}

// TestWebSocketTLSUpstream: the handshake and the tunnel use the upstream's TLS settings.
func TestWebSocketTLSUpstream(t *testing.T) {
	be := &wsBackend{}
	srv := httptest.NewTLSServer(http.HandlerFunc(be.serve))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, engineFor(t, fmt.Appendf(nil, `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  secure: { targets: [%q], timeout: 5s, tls: { ca_file: %q } }
routes:
  - { name: secure, match: { path: /ws }, upstream: secure }
`, srv.Listener.Addr().String(), ca)))
	c, _, err := wsDial(t, addr, "/ws")
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, c, "tls", 3)
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Error(err)
	}
}

// TestWebSocketSplit: a split route picks the side of a handshake as for any request.
func TestWebSocketSplit(t *testing.T) {
	a, b := startWSBackend(t, 0), startWSBackend(t, 0)
	addr := serve(t, engineFor(t, fmt.Appendf(nil, `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  a: { targets: [%q] }
  b: { targets: [%q] }
routes:
  - name: split
    match: { path: /ws }
    split: { upstreams: [ { upstream: a, weight: 100 }, { upstream: b, weight: 0 } ], header: X-Side }
`, a.addr, b.addr)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, side := range []string{"", "b"} {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"X-Side": {side}}})
		if err != nil {
			t.Fatal(err)
		}
		echoes(t, c, "side-"+side, 2)
		c.CloseNow()
	}
	if a.handshakes() != 1 || b.handshakes() != 1 {
		t.Errorf("handshakes: a %d, b %d; want 1 each (weights, then the header)", a.handshakes(), b.handshakes())
	}
}
