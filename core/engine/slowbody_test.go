package engine

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// slowBodyConfig has a plugin route and a plain route on one upstream, with a plugin pool and
// an upstream connection limit far smaller than the number of slow clients the tests open.
const slowBodyConfig = `
server:
  listen: "127.0.0.1:0"
  admin: ""
  plugin_cache_dir: "off"
  read_timeout: 10s
  body_timeout: %s
  body_buffer_bytes: %s
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], max_conns: 4, max_conn_wait: 100ms }
plugins:
  hello: { file: hello.wasm, memory_mb: 1, pool: { max: 4, max_wait: 100ms } }
routes:
  - name: plugin
    match: { path: /plugin }
    upstream: be
    filters: [ { hello: {} } ]
  - name: plain
    match: { path_prefix: / }
    upstream: be
`

func startSlowBody(t *testing.T, bodyTimeout, buffer string) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.wasm"), wasmtest.Hello(), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weir.yaml")
	cfg := fmt.Sprintf(slowBodyConfig, bodyTimeout, buffer, backend(t))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, path)
}

// stallBody opens a connection that sends a request head declaring a body of total bytes,
// then sent bytes of it, and stalls. The caller closes the connection.
func stallBody(t testing.TB, addr, path string, total, sent int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", path, total)
	if _, err := conn.Write(append([]byte(head), strings.Repeat("a", sent)...)); err != nil {
		t.Fatalf("write: %v", err)
	}
	return conn
}

// TestReadBodyAllocatesNothing checks that buffering a small body and streaming a large one
// cost no allocation once the pooled request has grown its buffer.
func TestReadBodyAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	// No body_timeout: a RequestCtx without a connection has no deadline to set.
	e := &Engine{bodyBuffer: 4 << 10}
	var rc fasthttp.RequestCtx
	r := &request{}
	r.Reset(&rc, "")
	for _, size := range []int{1 << 10, 64 << 10} {
		body := []byte(strings.Repeat("p", size))
		var src bytes.Reader
		run := func() {
			src.Reset(body)
			rc.Request.SetBodyStream(&src, size)
			if status, err := e.readBody(r); err != nil {
				t.Fatalf("%d bytes: %d %v", size, status, err)
			}
		}
		run()
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("%d-byte body: %v allocations, want 0", size, n)
		}
		if got := len(rc.Request.Body()); got != size {
			t.Errorf("%d-byte body: read back %d bytes", size, got)
		}
	}
}

// TestSlowBodiesHoldNoSharedResources stalls many request bodies half-way on a plugin route
// and on a plain route, more than the plugin pool (4) and the upstream's connection limit (4)
// allow at once, and checks that other requests on both routes are still served: a request
// takes a plugin instance and an upstream connection only once its body is in.
func TestSlowBodiesHoldNoSharedResources(t *testing.T) {
	_, addr := startSlowBody(t, "5s", "64KiB")
	const slow = 32
	var conns []net.Conn
	for i := 0; i < slow; i++ {
		path := "/plugin"
		if i%2 == 1 {
			path = "/plain"
		}
		conns = append(conns, stallBody(t, addr, path, 50_000, 8<<10))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the gateway start on every stalled request

	c := &fasthttp.Client{}
	for i := 0; i < 20; i++ {
		for _, path := range []string{"/plugin", "/plain"} {
			status, body, _, err := get(c, "http://"+addr+path)
			if err != nil || status != 200 || body != path {
				t.Fatalf("request %d to %s beside %d stalled bodies: %d %q %v", i, path, slow, status, body, err)
			}
		}
	}
}

// TestSlowBodyTimesOut checks that a body that stops arriving is answered 408 after
// server.body_timeout and the connection closed, with nothing forwarded.
func TestSlowBodyTimesOut(t *testing.T) {
	_, addr := startSlowBody(t, "300ms", "64KiB")
	// fasthttp reads the first 8 KiB of a body under read_timeout before the gateway sees the
	// request; body_timeout governs the rest.
	conn := stallBody(t, addr, "/plain", 50_000, 8<<10+100)
	defer conn.Close()
	began := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if got, want := resp.StatusCode(), fasthttp.StatusRequestTimeout; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	if !resp.ConnectionClose() {
		t.Error("connection not closed after a body timeout")
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("answered after %v; body_timeout is 300ms", took)
	}
}

// TestBodiesReachUpstreamWhole sends bodies below, at and above the buffer, with a declared
// length and chunked, and checks the upstream gets each one byte for byte.
func TestBodiesReachUpstreamWhole(t *testing.T) {
	rec := startRecorder(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", body_buffer_bytes: 1KiB, body_timeout: 2s }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes: [ { name: all, match: { path_prefix: / }, upstream: be } ]
`, rec.ln.Addr().String())
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	for _, n := range []int{0, 1, 1023, 1024, 1025, 64 << 10} {
		for _, isChunked := range []bool{false, true} {
			body := strings.Repeat("b", n)
			conn, br := dial(t, addr)
			raw := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, body)
			if isChunked {
				raw = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(body)
			}
			ex := send(t, conn, br, raw)
			conn.Close()
			if ex.status != 200 {
				t.Fatalf("%d bytes (chunked %v): status %d", n, isChunked, ex.status)
			}
			got := rec.take()
			if len(got) != 1 {
				t.Fatalf("%d bytes (chunked %v): upstream received %q", n, isChunked, clipAll(got))
			}
			var up fasthttp.Request
			if err := up.Read(bufio.NewReader(strings.NewReader(got[0]))); err != nil {
				t.Fatalf("%d bytes (chunked %v): upstream request unreadable: %v", n, isChunked, err)
			}
			if string(up.Body()) != body {
				t.Errorf("%d bytes (chunked %v): upstream body differs: %q", n, isChunked, clip(string(up.Body())))
			}
			// A body that fit the buffer goes upstream with its length; a larger one streams
			// in the client's framing.
			wantLength := n <= 1024 || !isChunked
			if gotLength := up.Header.ContentLength() >= 0; gotLength != wantLength {
				t.Errorf("%d bytes (chunked %v): framed with Content-Length %v, want %v", n, isChunked, gotLength, wantLength)
			}
		}
	}
}

var (
	slowBodies = flag.Int("slow-bodies", 100, "slow-body clients held open by TestSlowBodyLoad (make soak: 1000)")
	loadFor    = flag.Duration("load-for", 2*time.Second, "how long TestSlowBodyLoad sends normal traffic (make soak: 10s)")
)

// TestSlowBodyLoad holds -slow-bodies connections that each send 8 KiB of a 100 KB body to the
// plugin route and stall, while eight clients send normal requests to it for -load-for; at least
// 99% of those must succeed. It reports their p99. make test runs a short version, make soak
// the full one (1,000 slow clients).
func TestSlowBodyLoad(t *testing.T) {
	_, addr := startSlowBody(t, "60s", "64KiB")
	conns := make([]net.Conn, 0, *slowBodies)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < *slowBodies; i++ {
		conns = append(conns, stallBody(t, addr, "/plugin", 100_000, 8<<10))
	}
	time.Sleep(200 * time.Millisecond)

	const clients = 8
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    int
		firstErr  string
	)
	stop := time.Now().Add(*loadFor)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.Client{}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for time.Now().Before(stop) {
				req.Reset()
				req.SetRequestURI("http://" + addr + "/plugin")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.SetBodyString(`{"ok":true}`)
				began := time.Now()
				err := c.DoTimeout(req, resp, 5*time.Second)
				took := time.Since(began)
				mu.Lock()
				latencies = append(latencies, took)
				if err != nil || resp.StatusCode() != 200 {
					failed++
					if firstErr == "" {
						firstErr = fmt.Sprintf("status %d, %v", resp.StatusCode(), err)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(latencies) == 0 {
		t.Fatal("no request completed")
	}
	slices.Sort(latencies)
	p99 := latencies[len(latencies)*99/100]
	ok := float64(len(latencies)-failed) / float64(len(latencies))
	t.Logf("%d slow-body clients: %d of %d normal requests succeeded (%.2f%%), p50 %v, p99 %v",
		*slowBodies, len(latencies)-failed, len(latencies), 100*ok, latencies[len(latencies)/2], p99)
	if ok < 0.99 {
		t.Fatalf("%.2f%% of normal requests succeeded beside %d slow bodies, want >= 99%% (first failure: %s)", 100*ok, *slowBodies, firstErr)
	}
}

// TestEmptyDeclaredBodyIsNotReadWhole: a request that declares Content-Length: 0 arrives as an
// empty stream; nothing on its way may read the stream whole (fasthttp logs a warning for each
// such read, which would be a log line per request).
func TestEmptyDeclaredBodyIsNotReadWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes: [ { name: all, match: { path_prefix: / }, upstream: be } ]
`, backend(t))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	e, err := New(path, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, e)
	for _, method := range []string{"GET", "POST", "PUT"} {
		conn, br := dial(t, addr)
		ex := send(t, conn, br, method+" /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		if ex.status != 200 {
			t.Fatalf("%s with an empty body: status %d", method, ex.status)
		}
	}
	if strings.Contains(logs.String(), "entire stream") {
		t.Errorf("a request body stream was read whole: %s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines to log into.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
