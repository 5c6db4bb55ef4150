package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/testkit"
	_ "github.com/weir-gateway/weir/filters/all"
)

// backend starts a loopback HTTP server that answers 200 with the request path and the
// X-Tag request header, and returns its address. It stops at cleanup.
func backend(t testing.TB) string {
	t.Helper()
	addr, stop := startBackend(t)
	t.Cleanup(stop)
	return addr
}

func startBackend(t testing.TB) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		rc.Response.Header.SetBytesV("X-Tag", rc.Request.Header.Peek("X-Tag"))
		rc.SetBody(rc.Path())
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	return ln.Addr().String(), func() { _ = srv.Shutdown() }
}

const testConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  # A short idle timeout: fasthttp's pool cleaner goroutine of a retired upstream exits only
  # at its next wake-up, one idle period after the pool closed.
  be: { targets: [%q], timeout: %s, idle_timeout: 300ms }
routes:
  - name: tagged
    match: { path_prefix: /v1/ }
    upstream: be
    filters:
      - headers: { request: { set: { X-Tag: %q } } }
  - name: plain
    match: { path: /plain }
    upstream: be
`

func writeConfig(t testing.TB, path, be, timeout, tag string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(fmt.Sprintf(testConfig, be, timeout, tag)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs an engine on path and returns it with its address; it is shut down at cleanup.
func start(t testing.TB, path string) (*Engine, string) {
	t.Helper()
	e, err := New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return e, serve(t, e)
}

// serve runs e on a loopback port until cleanup, which drains it and checks both ends went well.
func serve(t testing.TB, e *Engine) string {
	t.Helper()
	return testkit.Serve(t, e)
}

// parseConfig parses a config from bytes as LoadConfig does from a file.
func parseConfig(name string, data []byte) (*config.Config, error) {
	return config.Parse(name, data, checkFilters)
}

func get(c *fasthttp.Client, url string) (int, string, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	err := c.DoTimeout(req, resp, 5*time.Second)
	return resp.StatusCode(), string(resp.Body()), string(resp.Header.Peek("X-Tag")), err
}

func TestServeRoutes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	writeConfig(t, path, backend(t), "2s", "one")
	_, addr := start(t, path)
	c := &fasthttp.Client{}
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
		wantTag    string
	}{
		{"/v1/users", 200, "/v1/users", "one"},
		{"/plain", 200, "/plain", ""},
		{"/nothing", 404, filter.ErrorBody(404), ""},
	}
	for _, tt := range tests {
		status, body, tag, err := get(c, "http://"+addr+tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		if status != tt.wantStatus || body != tt.wantBody || tag != tt.wantTag {
			t.Errorf("GET %s = %d %q tag %q, want %d %q tag %q", tt.path, status, body, tag, tt.wantStatus, tt.wantBody, tt.wantTag)
		}
	}
}

func TestReloadRejectsInvalidAndKeepsServing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	be := backend(t)
	writeConfig(t, path, be, "2s", "one")
	e, addr := start(t, path)
	c := &fasthttp.Client{}

	// Unchanged file: a no-op.
	ev, err := e.Reload("test")
	if err != nil || !ev.Unchanged {
		t.Fatalf("reload of unchanged config = %+v, %v; want unchanged", ev, err)
	}
	// Invalid file (unknown filter): rejected, old config keeps serving.
	bad := strings.Replace(fmt.Sprintf(testConfig, be, "2s", "two"), "headers:", "no-such-filter:", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reload("test"); err == nil || !strings.Contains(err.Error(), "no-such-filter") {
		t.Fatalf("reload of invalid config: err = %v, want it to name the unknown filter", err)
	}
	if _, _, tag, err := get(c, "http://"+addr+"/v1/x"); err != nil || tag != "one" {
		t.Fatalf("after rejected reload: tag %q err %v, want the old config (tag one)", tag, err)
	}
	// Valid change: applied.
	writeConfig(t, path, be, "2s", "two")
	if _, err := e.Reload("test"); err != nil {
		t.Fatalf("valid reload: %v", err)
	}
	if _, _, tag, err := get(c, "http://"+addr+"/v1/x"); err != nil || tag != "two" {
		t.Fatalf("after reload: tag %q err %v, want two", tag, err)
	}
	h := e.History()
	if got := len(h); got != 4 {
		t.Fatalf("history has %d events, want 4 (start, unchanged, rejected, applied): %+v", got, h)
	}
	if h[2].OK || h[2].Error == "" || !h[3].OK || h[3].Unchanged {
		t.Errorf("history = %+v", h)
	}
	if st := e.Stats(); st.Reloads != 1 || st.ReloadFailures != 1 {
		t.Errorf("stats = %+v, want 1 reload and 1 failure", st)
	}
}

// TestReloadHammer reloads 100 times while 8 clients send requests continuously: no request
// may fail, every response must come wholly from one snapshot, and nothing may leak.
func TestReloadHammer(t *testing.T) {
	baseline := runtime.NumGoroutine()
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	be, stopBackend := startBackend(t)
	writeConfig(t, path, be, "2s", "v0")
	e, addr := start(t, path)

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		ok, fail atomic.Int64
		firstErr atomic.Value
	)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.Client{MaxConnsPerHost: 4, MaxIdleConnDuration: 100 * time.Millisecond}
			defer c.CloseIdleConnections()
			for !stop.Load() {
				status, body, tag, err := get(c, "http://"+addr+"/v1/hammer")
				if err != nil || status != 200 || body != "/v1/hammer" || !strings.HasPrefix(tag, "v") {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d body %q tag %q err %v", status, body, tag, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 1; i <= 100; i++ {
		// Alternate the upstream's settings too, so connection pools are replaced and retired.
		timeout := []string{"2s", "3s"}[i%2]
		writeConfig(t, path, be, timeout, fmt.Sprintf("v%d", i))
		if _, err := e.Reload("hammer"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if fail.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", fail.Load(), ok.Load()+fail.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests completed; the hammer did not hammer", ok.Load())
	}
	if got := e.Stats().Reloads; got != 100 {
		t.Errorf("reloads = %d, want 100", got)
	}
	if got := e.Shared().Len(); got != 1 {
		t.Errorf("shared store holds %d objects after 100 reloads, want 1 (the current upstream)", got)
	}
	t.Logf("%d requests, 0 failed, during 100 reloads", ok.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.Shared().Len(); got != 0 {
		t.Errorf("shared store holds %d objects after shutdown, want 0", got)
	}
	stopBackend()
	// fasthttp starts two process-wide goroutines once (server date ticker, dialer cache).
	waitGoroutines(t, baseline+2)
}

func waitGoroutines(t *testing.T, limit int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > limit {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), limit, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answeringEngine builds an engine from the config src (named name in errors) whose routes
// answer 200 themselves instead of calling their upstream.
func answeringEngine(t testing.TB, name, src string) *Engine {
	t.Helper()
	cfg, err := parseConfig(name, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s := e.cur.Load()
	for i := range s.routes {
		s.routes[i].terminal = func(c *filter.Ctx) { c.SetStatusCode(200) }
	}
	return e
}

// TestMatchAndEmptyPipelineAllocateNothing proves the request path up to the upstream call —
// framing check, header sanitising, route match, an empty pipeline and the access log line —
// allocates nothing.
func TestMatchAndEmptyPipelineAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	logFile := filepath.Join(t.TempDir(), "access.log")
	for _, accessLog := range []string{"{ enabled: false }", fmt.Sprintf("{ enabled: true, output: %q }", logFile)} {
		e := answeringEngine(t, "alloc.yaml", `
access_log: `+accessLog+`
upstreams: { be: { targets: ["127.0.0.1:1"] } }
routes:
  - { name: a, match: { path_prefix: /a/ }, upstream: be }
  - { name: users, match: { path: "/users/{id}" }, upstream: be }
  - { name: post-only, match: { path: /p, methods: [POST] }, upstream: be }
`)
		var rc fasthttp.RequestCtx
		// The last two need normalising: the edge rewrites their target on every request.
		// "/missing" is answered 404 and "/p" 405 with Allow.
		for _, path := range []string{"/a/b", "/users/7", "/missing", "/p", "/a//./b/../c?q=1", "/users/%37"} {
			rc.Request.Reset()
			rc.Request.Header.SetMethod("GET")
			rc.Request.Header.SetHost("example.com")
			handle := func() {
				rc.Request.SetRequestURI(path)
				e.Handle(&rc)
			}
			handle() // warm pools
			if n := testing.AllocsPerRun(200, handle); n != 0 {
				t.Errorf("access_log %s, %s: %v allocations per request, want 0", accessLog, path, n)
			}
		}
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), `"route":"users"`) {
		t.Errorf("access log = %.200q, %v; want lines for the requests", b, err)
	}
}

// BenchmarkHandleEmptyPipeline is the gateway's own cost per request, with metrics recorded and
// not: the difference is what recording costs (core/telemetry/README.md).
func BenchmarkHandleEmptyPipeline(b *testing.B) {
	cfg, err := parseConfig("bench.yaml", []byte(`
access_log: { enabled: false }
upstreams: { be: { targets: ["127.0.0.1:1"] } }
routes:
  - { name: a, match: { path_prefix: /a/ }, upstream: be }
`))
	if err != nil {
		b.Fatal(err)
	}
	for _, metrics := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", metrics), func(b *testing.B) {
			e, err := NewFromConfig(cfg, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			defer e.Shutdown(context.Background()) //nolint:errcheck
			e.metrics = metrics
			e.cur.Load().routes[0].terminal = func(c *filter.Ctx) { c.SetStatusCode(200) }
			var rc fasthttp.RequestCtx
			// As the server does: Handle reads the request's arrival time from the context.
			rc.Init2(nil, nil, false)
			rc.Request.Header.SetMethod("GET")
			rc.Request.Header.SetHost("example.com")
			rc.Request.SetRequestURI("/a/b")
			b.ReportAllocs()
			cpu0 := processCPU(b) // a busy machine disturbs CPU time far less than wall time
			for b.Loop() {
				e.Handle(&rc)
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestAccessLogRecordsPathAsReceived checks the access log reports the path the client sent,
// not the one a rewrite filter forwarded.
func TestAccessLogRecordsPathAsReceived(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	cfg, err := parseConfig("log.yaml", []byte(fmt.Sprintf(`
access_log: { enabled: true, output: %q }
upstreams: { be: { targets: ["127.0.0.1:1"] } }
routes:
  - name: api
    match: { path_prefix: /api/ }
    upstream: be
    filters: [ { rewrite: { strip_prefix: /api } } ]
`, logFile)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var forwarded string
	e.cur.Load().routes[0].terminal = func(c *filter.Ctx) {
		forwarded = string(c.Request.URI().Path())
		c.SetStatusCode(200)
	}
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("GET")
	rc.Request.SetRequestURI("/api/users/7")
	rc.Request.Header.SetHost("app.test")
	e.Handle(&rc)
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if forwarded != "/users/7" || !strings.Contains(string(b), `"path":"/api/users/7"`) {
		t.Errorf("forwarded %q, logged %s; want /users/7 forwarded and /api/users/7 logged", forwarded, b)
	}
}

// TestConfigAfterShutdown checks that the config stays readable after Shutdown: the admin API
// stops after the engine and may still serve /healthz, /config or /routes meanwhile.
func TestConfigAfterShutdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeConfig(t, path, "127.0.0.1:1", "1s", "a")
	e, err := New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	want := e.Config()
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.Config(); got != want {
		t.Fatalf("Config() after Shutdown = %p, want the last running config %p", got, want)
	}
}
