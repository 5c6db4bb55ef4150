package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/core/testkit"
)

// traceBackend records the trace context fields of every request it answers.
type traceBackend struct {
	addr string
	mu   sync.Mutex
	seen []map[string][]string
}

func (b *traceBackend) start(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		got := map[string][]string{}
		for _, k := range []string{"traceparent", "tracestate"} {
			for _, v := range rc.Request.Header.PeekAll(k) {
				got[k] = append(got[k], string(v))
			}
		}
		b.mu.Lock()
		b.seen = append(b.seen, got)
		b.mu.Unlock()
		rc.SetBodyString("ok")
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	b.addr = ln.Addr().String()
	return b.addr
}

func (b *traceBackend) last(t *testing.T) map[string][]string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		t.Fatal("the backend got no request")
	}
	return b.seen[len(b.seen)-1]
}

const traceConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
tracing:
  enabled: true
  endpoint: %q
  sample_ratio: %v
  service_name: weir-test
  headers: { X-Collector-Token: t0ken-for-test }
  timeout: 2s
  batch: { interval: 20ms, max_size: %d, max_queue: %d }
upstreams:
  be: { targets: [%q], idle_timeout: 300ms }
  dead: { targets: ["127.0.0.1:1"], retries: { attempts: 1, backoff: 1ms } }
routes:
  - name: api
    match: { path_prefix: /api/ }
    upstream: be
    filters:
      - headers: { request: { set: { X-A: "1" } } }
      - headers: { response: { set: { X-B: "2" } } }
  - name: stop
    match: { path: /stop }
    upstream: be
    filters:
      - headers: { response: { set: { X-B: "2" } } }
      - respond: { status: 503, body: down }
  - name: down
    match: { path: /down }
    upstream: dead
`

// traceGateway runs a gateway tracing to endpoint, in front of a recording backend.
func traceGateway(t *testing.T, endpoint string, ratio float64, batch, queue int) (*Engine, string, *traceBackend) {
	t.Helper()
	be := &traceBackend{}
	cfg, err := parseConfig("trace.yaml", []byte(fmt.Sprintf(traceConfig, endpoint, ratio, batch, queue, be.start(t))))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return e, serve(t, e), be
}

func do(t *testing.T, addr, path string, hdr ...string) int {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	req.Header.Set("User-Agent", "trace-test/1")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode()
}

func TestTraceSpanTree(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	_, addr, be := traceGateway(t, rcv.URL, 1, 512, 2048)
	if st := do(t, addr, "/api/x?q=1"); st != 200 {
		t.Fatalf("status %d", st)
	}
	all := rcv.WaitSpans(t, 4, 10*time.Second)
	if len(all) != 4 {
		t.Fatalf("got %d spans, want 4 (server, 2 filters, upstream): %+v", len(all), all)
	}
	var srv, up testkit.Span
	var filters []testkit.Span
	for _, s := range all {
		switch s.Name {
		case "api":
			srv = s
		case "upstream be":
			up = s
		case "filter headers":
			filters = append(filters, s)
		default:
			t.Errorf("unexpected span %q", s.Name)
		}
	}
	for _, s := range all {
		if s.TraceID != srv.TraceID {
			t.Errorf("span %q in trace %s, want %s: one trace per request", s.Name, s.TraceID, srv.TraceID)
		}
		if s.Service != "weir-test" {
			t.Errorf("span %q of service %q", s.Name, s.Service)
		}
	}
	// server → filter 1 → filter 2 → upstream: each filter's span holds what runs after it.
	if srv.Parent != "" || srv.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server span: parent %q kind %v", srv.Parent, srv.Kind)
	}
	if len(filters) != 2 {
		t.Fatalf("filter spans: %+v", filters)
	}
	first, second := filters[0], filters[1]
	if first.Parent != srv.SpanID {
		first, second = second, first
	}
	if first.Parent != srv.SpanID || second.Parent != first.SpanID || up.Parent != second.SpanID {
		t.Errorf("tree: server %s; filters %s←%s, %s←%s; upstream parent %s",
			srv.SpanID, first.SpanID, first.Parent, second.SpanID, second.Parent, up.Parent)
	}
	if up.Kind != tracepb.Span_SPAN_KIND_CLIENT || up.Error {
		t.Errorf("upstream span: kind %v error %v", up.Kind, up.Error)
	}
	want := map[string]string{
		"http.request.method": "GET", "url.path": "/api/x", "http.route": "api", "url.scheme": "http",
		"http.response.status_code": "200", "server.address": "127.0.0.1", "client.address": "127.0.0.1",
		"user_agent.original": "trace-test/1",
	}
	for k, v := range want {
		if srv.Attrs[k] != v {
			t.Errorf("server span %s = %q, want %q", k, srv.Attrs[k], v)
		}
	}
	if up.Attrs["http.response.status_code"] != "200" || up.Attrs["weir.upstream"] != "be" || up.Attrs["server.address"] != "127.0.0.1" {
		t.Errorf("upstream span attributes: %v", up.Attrs)
	}
	if first.Attrs["weir.filter.name"] != "headers" || first.Attrs["weir.filter.kind"] != "filter" {
		t.Errorf("filter span attributes: %v", first.Attrs)
	}
	// The upstream's parent is the gateway's span for the call.
	if got, w := be.last(t)["traceparent"], []string{"00-" + srv.TraceID + "-" + up.SpanID + "-01"}; fmt.Sprint(got) != fmt.Sprint(w) {
		t.Errorf("upstream got traceparent %q, want %q", got, w)
	}
	if got := rcv.Header("X-Collector-Token"); got != "t0ken-for-test" {
		t.Errorf("collector got X-Collector-Token %q", got)
	}
}

func TestTraceContinuesCaller(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	// Ratio 0: the caller's sampled flag alone records the trace (parent-based sampling).
	_, addr, be := traceGateway(t, rcv.URL, 0, 512, 2048)
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if st := do(t, addr, "/api/x", "traceparent", "00-"+tid+"-"+sid+"-01", "tracestate", "vendor=abc,other=1"); st != 200 {
		t.Fatalf("status %d", st)
	}
	rcv.WaitSpans(t, 4, 10*time.Second)
	var srv, up testkit.Span
	for _, s := range rcv.Spans() {
		switch s.Name {
		case "api":
			srv = s
		case "upstream be":
			up = s
		}
	}
	if srv.TraceID != tid || srv.Parent != sid {
		t.Errorf("server span trace %s parent %s; want the caller's %s and %s", srv.TraceID, srv.Parent, tid, sid)
	}
	got := be.last(t)
	if w := "00-" + tid + "-" + up.SpanID + "-01"; len(got["traceparent"]) != 1 || got["traceparent"][0] != w {
		t.Errorf("upstream got traceparent %q, want %q", got["traceparent"], w)
	}
	if fmt.Sprint(got["tracestate"]) != "[vendor=abc,other=1]" {
		t.Errorf("upstream got tracestate %q, want the caller's", got["tracestate"])
	}
}

func TestTraceUnsampledPropagates(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	e, addr, be := traceGateway(t, rcv.URL, 0, 512, 2048)
	// An unsampled caller's context goes upstream exactly as it came.
	const in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	do(t, addr, "/api/x", "traceparent", in, "tracestate", "vendor=abc")
	if got := be.last(t); fmt.Sprint(got["traceparent"]) != "["+in+"]" || fmt.Sprint(got["tracestate"]) != "[vendor=abc]" {
		t.Errorf("upstream got %v, want the caller's fields unchanged", got)
	}
	// Without one, the gateway starts an unsampled trace and passes it on.
	do(t, addr, "/api/x")
	got := be.last(t)["traceparent"]
	if len(got) != 1 || len(got[0]) != 55 || !strings.HasPrefix(got[0], "00-") || !strings.HasSuffix(got[0], "-00") {
		t.Errorf("upstream got traceparent %q, want a new unsampled one", got)
	}
	if err := e.Shutdown(context.Background()); err != nil { // flushes: anything queued is sent now
		t.Fatal(err)
	}
	if s := rcv.Spans(); len(s) != 0 {
		t.Errorf("ratio 0 exported %d spans: %+v", len(s), s)
	}
}

// TestTraceHostileTraceparent sends malformed trace context: the request is served, a new
// trace is started (not the one the client named) and the client's tracestate is dropped.
func TestTraceHostileTraceparent(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	_, addr, be := traceGateway(t, rcv.URL, 1, 512, 2048)
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	bad := [][]string{
		{"traceparent", "garbage"},
		{"traceparent", "00-" + strings.ToUpper(tid) + "-00f067aa0ba902b7-01"},
		{"traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
		{"traceparent", "00-" + tid + "-0000000000000000-01"},
		{"traceparent", "ff-" + tid + "-00f067aa0ba902b7-01"},
		{"traceparent", "00-" + tid + "-00f067aa0ba902b7-01-extra"},
		{"traceparent", "00-" + tid + "-00f067aa0ba902b7-09"},
		{"traceparent", "00-" + tid + "-00f067aa0ba902b7-01", "traceparent", "00-" + tid + "-00f067aa0ba902b8-01"},
		{"traceparent", strings.Repeat("0", 4000)},
	}
	for _, h := range bad {
		h = append(h, "tracestate", "vendor=evil")
		if st := do(t, addr, "/api/x", h...); st != 200 {
			t.Errorf("%q: status %d", h, st)
		}
		got := be.last(t)
		if len(got["traceparent"]) != 1 || strings.Contains(got["traceparent"][0], tid) || len(got["traceparent"][0]) != 55 {
			t.Errorf("%q: upstream got traceparent %q, want one of a new trace", h, got["traceparent"])
		}
		if len(got["tracestate"]) != 0 {
			t.Errorf("%q: upstream got tracestate %q, want none", h, got["tracestate"])
		}
	}
	spans := rcv.WaitSpans(t, 4*len(bad), 10*time.Second)
	traces := map[string]bool{}
	for _, s := range spans {
		traces[s.TraceID] = true
		if s.TraceID == tid {
			t.Errorf("span %q continues the malformed trace", s.Name)
		}
	}
	if len(traces) != len(bad) {
		t.Errorf("%d traces for %d requests", len(traces), len(bad))
	}
}

// TestTraceHostileTracestate continues a valid sampled caller whose tracestate is broken or
// oversized: the trace goes on, and the upstream gets no tracestate rather than a bad one.
func TestTraceHostileTracestate(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	_, addr, be := traceGateway(t, rcv.URL, 1, 512, 2048)
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	var many []string
	for i := range 40 { // the list allows 32 members
		many = append(many, fmt.Sprintf("v%d=x", i))
	}
	for _, ts := range []string{"not a list", "=x", "a=b,a=c", "A=b", strings.Join(many, ","), "a=" + strings.Repeat("x", 300)} {
		if st := do(t, addr, "/api/x", "traceparent", "00-"+tid+"-00f067aa0ba902b7-01", "tracestate", ts); st != 200 {
			t.Fatalf("tracestate %.40q: status %d", ts, st)
		}
		got := be.last(t)
		if len(got["traceparent"]) != 1 || !strings.Contains(got["traceparent"][0], tid) {
			t.Errorf("tracestate %.40q: upstream got traceparent %q, want the caller's trace continued", ts, got["traceparent"])
		}
		if len(got["tracestate"]) != 0 {
			t.Errorf("tracestate %.40q: upstream got tracestate %.60q, want none", ts, got["tracestate"])
		}
	}
	// Fields of one list split over several header lines are one list.
	do(t, addr, "/api/x", "traceparent", "00-"+tid+"-00f067aa0ba902b7-01", "tracestate", "a=1", "tracestate", "b=2")
	if got := be.last(t)["tracestate"]; fmt.Sprint(got) != "[a=1,b=2]" {
		t.Errorf("split tracestate: upstream got %q, want [a=1,b=2]", got)
	}
}

// TestTraceRetriesAndErrors checks that each attempt has its own client span and that failures
// mark spans failed, and that a filter's local reply ends its span and the chain.
func TestTraceRetriesAndErrors(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	_, addr, _ := traceGateway(t, rcv.URL, 1, 512, 2048)
	if st := do(t, addr, "/down"); st != 502 {
		t.Fatalf("/down: status %d, want 502", st)
	}
	if st := do(t, addr, "/stop"); st != 503 {
		t.Fatalf("/stop: status %d, want 503", st)
	}
	spans := rcv.WaitSpans(t, 6, 10*time.Second) // down: server + 2 attempts; stop: server + 2 filters
	var attempts []testkit.Span
	var down, stop testkit.Span
	for _, s := range spans {
		switch s.Name {
		case "upstream dead":
			attempts = append(attempts, s)
		case "down":
			down = s
		case "stop":
			stop = s
		}
	}
	if !down.Error || down.Attrs["http.response.status_code"] != "502" {
		t.Errorf("down server span: error %v, attributes %v", down.Error, down.Attrs)
	}
	if len(attempts) != 2 {
		t.Fatalf("got %d attempt spans, want 2 (a try and a retry): %+v", len(attempts), attempts)
	}
	resends := map[string]bool{}
	for _, a := range attempts {
		if !a.Error || a.Parent != down.SpanID {
			t.Errorf("attempt span: error %v parent %s (server %s)", a.Error, a.Parent, down.SpanID)
		}
		resends[a.Attrs["http.request.resend_count"]] = true
	}
	if !resends[""] || !resends["1"] {
		t.Errorf("resend counts %v, want the try (none) and retry 1", resends)
	}
	var respond testkit.Span
	for _, s := range spans {
		if s.Name == "filter respond" {
			respond = s
		}
	}
	if !stop.Error || !respond.Error || respond.Attrs["weir.filter.stopped"] != "true" || respond.TraceID != stop.TraceID {
		t.Errorf("stop: server error %v; respond span %+v", stop.Error, respond)
	}
}

// TestTraceCollectorDownOrSlow checks that requests are served whatever the collector does,
// and that spans that find the queue full are dropped and counted.
func TestTraceCollectorDownOrSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/v1/traces"
	ln.Close() // nothing listens there now

	slow := testkit.NewOTLPReceiver(t)
	slow.Delay = 3 * time.Second

	dropped := telemetry.Metrics.Counter("tracing", "otlp", "spans_dropped")
	failed := telemetry.Metrics.Counter("tracing", "otlp", "spans_failed")
	for _, endpoint := range []string{down, slow.URL} {
		dropped0, failed0 := dropped.Load(), failed.Load()
		e, addr, _ := traceGateway(t, endpoint, 1, 2, 4)
		for i := range 50 {
			if st := do(t, addr, "/api/x"); st != 200 {
				t.Fatalf("%s: request %d: status %d", endpoint, i, st)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.Shutdown(ctx) // the flush fails against a dead collector; that is fine here
		cancel()
		// 200 spans met a queue of 4. Against the slow collector, which holds each export of two
		// spans for seconds, the queue must have been full; against the dead one, exports fail.
		d, f := dropped.Load()-dropped0, failed.Load()-failed0
		if endpoint == slow.URL && d == 0 {
			t.Errorf("slow collector: no span counted as dropped")
		}
		if endpoint == down && d+f == 0 {
			t.Errorf("dead collector: no span counted as dropped or failed")
		}
	}
}

// tracedEngine builds an engine whose routes answer 200 themselves (no upstream), with the
// given tracing section.
func tracedEngine(t testing.TB, tracingSection string) *Engine {
	t.Helper()
	return answeringEngine(t, "trace.yaml", `
access_log: { enabled: false }
tracing: `+tracingSection+`
upstreams: { be: { targets: ["127.0.0.1:1"] } }
routes:
  - name: a
    match: { path_prefix: /a/ }
    upstream: be
    filters:
      - headers: { request: { set: { X-A: "1" } } }
`)
}

// TestTraceUnsampledAllocatesNothing: a request that is not sampled, whether the gateway
// starts its trace or its caller chose not to record, allocates nothing, filters included;
// neither does any request with tracing off.
func TestTraceUnsampledAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	rcv := testkit.NewOTLPReceiver(t)
	on := tracedEngine(t, fmt.Sprintf("{ enabled: true, endpoint: %q, sample_ratio: 0 }", rcv.URL))
	defer on.Shutdown(context.Background()) //nolint:errcheck
	off := tracedEngine(t, "{ enabled: false }")
	defer off.Shutdown(context.Background()) //nolint:errcheck
	for _, tp := range []string{"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "malformed"} {
		for _, e := range []*Engine{on, off} {
			var rc fasthttp.RequestCtx
			handle := func() {
				rc.Request.Reset()
				rc.Request.Header.SetMethod("GET")
				rc.Request.Header.SetHost("example.com")
				rc.Request.SetRequestURI("/a/b")
				if tp != "" {
					rc.Request.Header.Set("traceparent", tp)
				}
				e.Handle(&rc)
			}
			handle()
			// Off, the request is left as it came; on, it carries a valid traceparent.
			if got := rc.Request.Header.Peek("traceparent"); e == on && len(got) != 55 || e == off && string(got) != tp {
				t.Errorf("traceparent %q, tracing on %v: forwarded %q", tp, e == on, got)
			}
			if n := testing.AllocsPerRun(200, handle); n != 0 {
				t.Errorf("traceparent %q, tracing on %v: %v allocations per unsampled request, want 0", tp, e == on, n)
			}
		}
	}
}

// BenchmarkHandleTracing compares Handle (routing, one filter, a local answer) with tracing
// off, on but never sampling (what an unsampled request costs), on at 1 % and on at 100 %
// sampling, exporting to an in-process collector that reads and discards what it gets.
func BenchmarkHandleTracing(b *testing.B) {
	rcv := testkit.NewOTLPReceiver(b)
	rcv.Discard = true // the collector's work is not the gateway's
	for _, bc := range []struct{ name, section string }{
		{"off", "{ enabled: false }"},
		{"ratio=0", fmt.Sprintf("{ enabled: true, endpoint: %q, sample_ratio: 0 }", rcv.URL)},
		{"ratio=0.01", fmt.Sprintf("{ enabled: true, endpoint: %q, sample_ratio: 0.01 }", rcv.URL)},
		{"ratio=1", fmt.Sprintf("{ enabled: true, endpoint: %q, sample_ratio: 1 }", rcv.URL)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := tracedEngine(b, bc.section)
			defer e.Shutdown(context.Background()) //nolint:errcheck
			var rc fasthttp.RequestCtx
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				rc.Request.Reset()
				rc.Request.Header.SetMethod("GET")
				rc.Request.Header.SetHost("example.com")
				rc.Request.SetRequestURI("/a/b")
				e.Handle(&rc)
			}
			// The process's CPU time, exporter and collector included, is what a request costs
			// on a busy machine, where wall time also counts other processes.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestTraceReloadIsRestartOnly: a reload that turns tracing off (or changes it) leaves the
// running tracer in charge, filter spans included, until the next start.
func TestTraceReloadIsRestartOnly(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	e, addr, be := traceGateway(t, rcv.URL, 1, 512, 2048)
	src := fmt.Sprintf(traceConfig, "http://127.0.0.1:1/v1/traces", 0.5, 512, 2048, be.addr)
	src = strings.Replace(src, "enabled: true", "enabled: false", 1)
	src = strings.Replace(src, "X-A: \"1\"", "X-A: \"2\"", 1) // and a change a reload does apply
	cfg, err := parseConfig("trace.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Apply(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	do(t, addr, "/api/x")
	spans := rcv.WaitSpans(t, 4, 10*time.Second)
	names := map[string]int{}
	for _, s := range spans {
		names[s.Name]++
	}
	if names["api"] != 1 || names["filter headers"] != 2 || names["upstream be"] != 1 {
		t.Errorf("spans after the reload: %v, want the server, both filters and the upstream", names)
	}
}

// processCPU returns the CPU time the process has used, user and system, in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestTracePluginSpans: a WebAssembly plugin's call gets its span like a built-in filter, named
// and marked as a plugin, and a plugin that fails closed marks it failed.
func TestTracePluginSpans(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	path := writePluginConfig(t, t.TempDir(), "closed", 3)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "tracing: { enabled: true, endpoint: %q, batch: { interval: 20ms } }\n", rcv.URL)
	f.Close()
	_, addr := start(t, path)
	if st := do(t, addr, "/hello"); st != 200 {
		t.Fatalf("/hello: status %d", st)
	}
	if st := do(t, addr, "/spin"); st != 500 {
		t.Fatalf("/spin: status %d", st)
	}
	spans := rcv.WaitSpans(t, 4, 10*time.Second)
	got := map[string]testkit.Span{}
	for _, s := range spans {
		got[s.Name] = s
	}
	hello, plugin := got["hello"], got["plugin hello"]
	if plugin.Parent != hello.SpanID || plugin.Attrs["weir.filter.kind"] != "plugin" || plugin.Attrs["weir.filter.name"] != "hello" || plugin.Error {
		t.Errorf("plugin span %+v under server span %s", plugin, hello.SpanID)
	}
	spin, spinPlugin := got["spin"], got["plugin spin"]
	if !spin.Error || !spinPlugin.Error || spinPlugin.Parent != spin.SpanID || spinPlugin.Attrs["weir.filter.stopped"] != "true" {
		t.Errorf("a plugin failing closed: server span %+v, plugin span %+v", spin, spinPlugin)
	}
}

// TestTraceIDInAccessLog: the access log line carries the request's trace id, sampled or not:
// the caller's, or the one the gateway started and passed upstream.
func TestTraceIDInAccessLog(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	be := &traceBackend{}
	logFile := filepath.Join(t.TempDir(), "access.log")
	src := fmt.Sprintf(traceConfig, rcv.URL, 0, 512, 2048, be.start(t))
	src = strings.Replace(src, "access_log: { enabled: false }", fmt.Sprintf("access_log: { enabled: true, output: %q }", logFile), 1)
	cfg, err := parseConfig("trace.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	want := map[string]string{"/api/sampled": caller, "/api/unsampled": caller}
	// Registered before serve's cleanup, so it runs after it: shutting down flushes the log.
	t.Cleanup(func() {
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var entry struct {
				Path    string `json:"path"`
				TraceID string `json:"trace_id"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if w, ok := want[entry.Path]; ok {
				if entry.TraceID != w {
					t.Errorf("%s: trace_id %q, want %q", entry.Path, entry.TraceID, w)
				}
				delete(want, entry.Path)
			}
		}
		if len(want) != 0 {
			t.Errorf("no log line for %v in %s", want, b)
		}
	})
	addr := serve(t, e)
	do(t, addr, "/api/sampled", "traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
	do(t, addr, "/api/unsampled", "traceparent", "00-"+caller+"-00f067aa0ba902b7-00")
	do(t, addr, "/api/new")
	want["/api/new"] = strings.Split(be.last(t)["traceparent"][0], "-")[1]
}

// TestTraceConcurrentRequests: pooled per-request trace state never mixes two requests' spans,
// whatever the interleaving (run it with -race).
func TestTraceConcurrentRequests(t *testing.T) {
	rcv := testkit.NewOTLPReceiver(t)
	_, addr, _ := traceGateway(t, rcv.URL, 1, 512, 4096)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if st := do(t, addr, "/api/x"); st != 200 {
					t.Errorf("status %d", st)
					return
				}
			}
		})
	}
	wg.Wait()
	spans := rcv.WaitSpans(t, 4*workers*each, 20*time.Second)
	traces := map[string][]testkit.Span{}
	for _, s := range spans {
		traces[s.TraceID] = append(traces[s.TraceID], s)
	}
	if len(traces) != workers*each {
		t.Fatalf("%d traces for %d requests", len(traces), workers*each)
	}
	for id, ss := range traces {
		ids := map[string]bool{}
		for _, s := range ss {
			ids[s.SpanID] = true
		}
		roots := 0
		for _, s := range ss {
			switch {
			case s.Parent == "":
				roots++
			case !ids[s.Parent]:
				t.Errorf("trace %s: span %q has a parent from elsewhere", id, s.Name)
			}
		}
		if len(ss) != 4 || roots != 1 {
			t.Errorf("trace %s: %d spans, %d roots", id, len(ss), roots)
		}
	}
}
