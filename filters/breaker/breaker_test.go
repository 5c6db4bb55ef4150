package breaker

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func mustBuild(tb testing.TB, yamlCfg string) *Filter {
	return filtertest.MustNewFilter(tb, New, Name, yamlCfg).(*Filter)
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

var errRefused = errors.New("upstream \"be\" target 127.0.0.1:1: connection refused")

// call runs one request through f with an upstream that answers as up says, and reports
// whether the upstream was reached and the status the client got.
func call(t testing.TB, f *Filter, up func(c *filter.Ctx)) (reached bool, status int, c *filter.Ctx) {
	c = filtertest.NewCtx(t, "GET /orders HTTP/1.1\nHost: h\n")
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	p.Run(c, func(c *filter.Ctx) { reached = true; up(c) })
	return reached, c.Response.StatusCode(), c
}

func answer(status int) func(*filter.Ctx) {
	return func(c *filter.Ctx) { c.SetStatusCode(status) }
}

func fail(status int) func(*filter.Ctx) {
	return func(c *filter.Ctx) { c.Fail(status, errRefused) }
}

// coolDown makes the open breaker's cool-down be over, as if open_for had passed.
func coolDown(f *Filter) { f.st.openedAt.Store(f.st.now() - int64(f.st.p.openFor) - 1) }

func TestConsecutiveFailuresOpen(t *testing.T) {
	f := mustBuild(t, `{name: t-consecutive, consecutive_failures: 3, open_for: 1h}`)
	for i := 0; i < 2; i++ {
		call(t, f, fail(502))
	}
	call(t, f, answer(200)) // a success resets the run
	for i := 0; i < 2; i++ {
		call(t, f, fail(502))
	}
	if got := f.st.State(); got != Closed {
		t.Fatalf("after 2 failures in a row: state %d, want closed", got)
	}
	call(t, f, answer(503))
	if got := f.st.State(); got != Open {
		t.Fatalf("after 3 failures in a row: state %d, want open", got)
	}
	reached, status, c := call(t, f, answer(200))
	if reached || status != 503 {
		t.Fatalf("open: reached %v, status %d; want not reached, 503", reached, status)
	}
	if got := string(c.Response.Header.Peek("Retry-After")); got != "3600" {
		t.Errorf("Retry-After: got %q, want 3600", got)
	}
	if !errors.Is(c.Err(), errOpen) {
		t.Errorf("err: got %v, want %v", c.Err(), errOpen)
	}
}

func TestHalfOpen(t *testing.T) {
	tests := []struct {
		name      string
		probes    int
		outcomes  []func(*filter.Ctx)
		wantState int32
	}{
		{"one probe succeeds", 1, []func(*filter.Ctx){answer(200)}, Closed},
		{"one probe fails", 1, []func(*filter.Ctx){fail(502)}, Open},
		{"probe times out", 1, []func(*filter.Ctx){fail(504)}, Open},
		{"all of three succeed", 3, []func(*filter.Ctx){answer(200), answer(204), answer(404)}, Closed},
		{"two of three succeed", 3, []func(*filter.Ctx){answer(200), answer(200)}, HalfOpen},
		{"last of three fails", 3, []func(*filter.Ctx){answer(200), answer(200), answer(500)}, Open},
		{"client's fault gives the place back", 1, []func(*filter.Ctx){fail(400), answer(200)}, Closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, fmt.Sprintf(`{name: t-half, consecutive_failures: 1, open_for: 1m, half_open_probes: %d}`, tt.probes))
			call(t, f, fail(502))
			coolDown(f)
			for i, o := range tt.outcomes {
				if reached, _, _ := call(t, f, o); !reached {
					t.Fatalf("probe %d not let through", i)
				}
			}
			if got := f.st.State(); got != tt.wantState {
				t.Errorf("state: got %s, want %s", stateNames[got], stateNames[tt.wantState])
			}
		})
	}
}

// TestHalfOpenBoundsProbes: while the probes are in flight, every other request is answered
// by the gateway.
func TestHalfOpenBoundsProbes(t *testing.T) {
	f := mustBuild(t, `{name: t-bound, consecutive_failures: 1, open_for: 1m, half_open_probes: 2}`)
	call(t, f, fail(502))
	coolDown(f)
	// Hold two probes in flight: their OnResponse has not run yet.
	var held []*filter.Ctx
	for i := 0; i < 2; i++ {
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
		if f.OnRequest(c) != filter.Continue {
			t.Fatalf("probe %d refused", i)
		}
		held = append(held, c)
	}
	for i := 0; i < 5; i++ {
		reached, status, c := call(t, f, answer(200))
		if reached || status != 503 || string(c.Response.Header.Peek("Retry-After")) != "1" {
			t.Fatalf("request beyond the probes: reached %v, status %d, Retry-After %q", reached, status,
				c.Response.Header.Peek("Retry-After"))
		}
	}
	for _, c := range held {
		c.SetStatusCode(200)
		f.OnResponse(c)
	}
	if got := f.st.State(); got != Closed {
		t.Fatalf("state: got %s, want closed", stateNames[got])
	}
	if reached, _, _ := call(t, f, answer(200)); !reached {
		t.Error("closed breaker refused a request")
	}
}

func TestErrorRatio(t *testing.T) {
	f := mustBuild(t, `{name: t-ratio, error_ratio: 0.5, min_requests: 10, window: 1h}`)
	// 4 successes then alternating: failures never run 5 in a row (no consecutive rule
	// anyway: a ratio is set).
	for i := 0; i < 9; i++ {
		if i%2 == 0 {
			call(t, f, answer(200))
		} else {
			call(t, f, answer(500))
		}
	}
	if got := f.st.State(); got != Closed {
		t.Fatalf("9 calls (4 failures) under min_requests: state %s", stateNames[got])
	}
	call(t, f, answer(500)) // 10 calls, 5 failures
	if got := f.st.State(); got != Open {
		t.Fatalf("10 calls, 5 failures: state %s, want open", stateNames[got])
	}
}

func TestErrorRatioBelow(t *testing.T) {
	f := mustBuild(t, `{name: t-ratio-below, error_ratio: 0.5, min_requests: 10, window: 1h}`)
	for i := 0; i < 100; i++ {
		o := answer(200)
		if i%3 == 0 {
			o = answer(500)
		}
		call(t, f, o)
	}
	if got := f.st.State(); got != Closed {
		t.Fatalf("a third failing: state %s, want closed", stateNames[got])
	}
}

func TestSlowRatio(t *testing.T) {
	f := mustBuild(t, `{name: t-slow, slow_ratio: 0.5, slow_call: 1ms, min_requests: 2, window: 1h}`)
	slowOK := func(c *filter.Ctx) { time.Sleep(3 * time.Millisecond); c.SetStatusCode(200) }
	call(t, f, slowOK)
	if got := f.st.State(); got != Closed {
		t.Fatalf("1 call: state %s", stateNames[got])
	}
	call(t, f, slowOK)
	if got := f.st.State(); got != Open {
		t.Fatalf("2 slow calls: state %s, want open", stateNames[got])
	}
}

func TestWindowForgets(t *testing.T) {
	var w window
	w.init(10 * time.Second) // 1s buckets
	sec := int64(time.Second)
	w.add(0, failure)
	w.add(sec/2, success)
	w.add(5*sec, failure)
	if c, f, _ := w.sum(9 * sec); c != 3 || f != 2 {
		t.Errorf("at 9s: calls %d failures %d, want 3 2", c, f)
	}
	if c, f, _ := w.sum(10 * sec); c != 1 || f != 1 {
		t.Errorf("at 10s: calls %d failures %d, want 1 1 (the first second has left the window)", c, f)
	}
	w.add(10*sec, success) // recycles bucket 0
	if c, f, _ := w.sum(10 * sec); c != 2 || f != 1 {
		t.Errorf("after recycling: calls %d failures %d, want 2 1", c, f)
	}
	if c, _, _ := w.sum(100 * sec); c != 0 {
		t.Errorf("long after: calls %d, want 0", c)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		up   func(*filter.Ctx)
		want outcome
	}{
		{"upstream 200", `{}`, answer(200), success},
		{"upstream 404", `{}`, answer(404), success},
		{"upstream 500", `{}`, answer(500), failure},
		{"upstream 501 is not in the defaults", `{}`, answer(501), success},
		{"own statuses", `{failure: {statuses: [429]}}`, answer(429), failure},
		{"own statuses replace the defaults", `{failure: {statuses: [429]}}`, answer(500), success},
		{"no statuses", `{failure: {statuses: []}}`, answer(503), success},
		{"connection refused", `{}`, fail(502), failure},
		{"no target", `{}`, fail(503), failure},
		{"timeout", `{}`, fail(504), failure},
		{"connection errors off", `{failure: {connection_errors: false}}`, fail(502), neutral},
		{"timeouts off", `{failure: {timeouts: false}}`, fail(504), neutral},
		{"timeouts off, refused still counts", `{failure: {timeouts: false}}`, fail(502), failure},
		{"client's bad body", `{}`, fail(400), neutral},
		{"later filter refused", `{}`, fail(401), neutral},
		{"odd status", `{}`, answer(999), success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
			tt.up(c)
			if got := f.st.classify(c); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{consecutive_failures: -1}`, "consecutive_failures"},
		{`{error_ratio: 1.5}`, "error_ratio"},
		{`{error_ratio: -0.1}`, "error_ratio"},
		{`{slow_ratio: 2}`, "slow_ratio"},
		{`{slow_call: 1s}`, "slow_call: set without slow_ratio"},
		{`{slow_ratio: 0.5, slow_call: -1s}`, "slow_call"},
		{`{window: 10s}`, "window and min_requests apply"},
		{`{min_requests: 5}`, "window and min_requests apply"},
		{`{error_ratio: 0.5, window: 5ms}`, "window: 5ms is shorter"},
		{`{open_for: -1s}`, "open_for"},
		{`{open_for: 1us}`, "open_for: 1µs is shorter"},
		{`{half_open_probes: 1001}`, "half_open_probes"},
		{`{half_open_probes: -1}`, "half_open_probes"},
		{`{failure: {statuses: [99]}}`, "not an HTTP status"},
		{`{failure: {statuses: [600]}}`, "not an HTTP status"},
		{`{nope: 1}`, "nope"},
		{`{failure: {nope: 1}}`, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := filtertest.NewFilter(t, New, Name, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	f := mustBuild(t, `{}`)
	p := f.st.p
	if p.consecutive != defaultConsecutive || p.openFor != defaultOpenFor || p.probes != 1 || p.errorRatio != 0 ||
		!p.connErrors || !p.timeouts || !p.statuses[503] || p.statuses[501] {
		t.Errorf("defaults: %s", p)
	}
	f = mustBuild(t, `{error_ratio: 0.5}`)
	if f.st.p.consecutive != 0 || f.st.p.window != defaultWindow || f.st.p.minRequests != defaultMinRequests {
		t.Errorf("with a ratio: %s", f.st.p)
	}
}

// TestSharedAcrossReload: a rebuilt filter with the same definition keeps an open breaker
// open; routes naming the same breaker share it; a changed definition starts closed.
func TestSharedAcrossReload(t *testing.T) {
	shared := filter.NewShared()
	build := func(route, cfg string) *Filter {
		tree, err := filtertest.ParseYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		env := filter.Env{Route: route, Filter: Name, Shared: shared, Log: zerolog.Nop()}
		f, err := New(env, func(v any) error { return config.DecodeStrict(tree, v) })
		if err != nil {
			t.Fatal(err)
		}
		return f.(*Filter)
	}
	old := build("r1", `{consecutive_failures: 1}`)
	call(t, old, fail(502))
	next := build("r1", `{consecutive_failures: 1}`)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if next.st.State() != Open {
		t.Error("reload with the same definition: breaker closed")
	}
	if other := build("r2", `{consecutive_failures: 1}`); other.st == next.st {
		t.Error("another route shares the breaker without naming it")
	}
	a := build("r3", `{name: orders, consecutive_failures: 2}`)
	b := build("r4", `{name: orders, consecutive_failures: 2}`)
	if a.st != b.st {
		t.Error("two routes naming one breaker got two states")
	}
	if changed := build("r1", `{consecutive_failures: 2}`); changed.st.State() != Closed {
		t.Error("changed definition kept the old state")
	}
}

func TestMetrics(t *testing.T) {
	f := mustBuild(t, `{name: t-metrics, consecutive_failures: 1, open_for: 1m}`)
	get := func(n string) int64 { return telemetry.Metrics.Group(MetricsGroup)["t-metrics"][n] }
	call(t, f, fail(502))
	call(t, f, answer(200))
	call(t, f, answer(200))
	if get("state") != 1 || get("opened") != 1 || get("rejected") != 2 {
		t.Errorf("open: %v", telemetry.Metrics.Group(MetricsGroup)["t-metrics"])
	}
	coolDown(f)
	call(t, f, answer(200))
	if get("state") != 0 || get("probes") != 1 {
		t.Errorf("closed: %v", telemetry.Metrics.Group(MetricsGroup)["t-metrics"])
	}
}

// TestTransitionsLoggedOnce: many concurrent failures open the breaker once, with one log line.
func TestTransitionsLoggedOnce(t *testing.T) {
	var buf syncBuffer
	shared := filter.NewShared()
	tree, _ := filtertest.ParseYAML(`{name: t-log, consecutive_failures: 3, open_for: 1h}`)
	ff, err := New(filter.Env{Route: "r", Shared: shared, Log: zerolog.New(&buf)}, func(v any) error { return config.DecodeStrict(tree, v) })
	if err != nil {
		t.Fatal(err)
	}
	f := ff.(*Filter)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				call(t, f, fail(502))
			}
		}()
	}
	wg.Wait()
	if n := buf.count("breaker opened"); n != 1 {
		t.Errorf("%d 'breaker opened' lines, want 1:\n%s", n, buf.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return string(s.b) }

func (s *syncBuffer) count(sub string) int {
	return strings.Count(s.String(), sub)
}

// TestConcurrentFlapping drives the breaker through its states from many goroutines (run it
// with -race): it never lets more probes in than configured in one half-open period.
func TestConcurrentFlapping(t *testing.T) {
	f := mustBuild(t, `{name: t-flap, consecutive_failures: 2, open_for: 1ms, half_open_probes: 2}`)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				o := answer(200)
				if (i+g)%3 == 0 {
					o = fail(502)
				}
				call(t, f, o)
			}
		}(g)
	}
	wg.Wait()
	if pr := f.st.probe.Load(); pr != nil && pr.admitted.Load() > 2 {
		t.Errorf("%d probes admitted in one period, want at most 2", pr.admitted.Load())
	}
}

func TestAllocs(t *testing.T) {
	closed := mustBuild(t, `{name: t-allocs-closed, error_ratio: 0.9, min_requests: 1000000}`)
	open := mustBuild(t, `{name: t-allocs-open, consecutive_failures: 1, open_for: 1h}`)
	call(t, open, fail(502))
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	for _, tt := range []struct {
		name string
		f    *Filter
		up   func(*filter.Ctx)
	}{{"closed success", closed, answer(200)}, {"closed failure", closed, answer(500)}, {"open", open, answer(200)}} {
		p := filter.NewPipeline([]filter.Filter{tt.f}, []string{Name})
		n := testing.AllocsPerRun(1000, func() {
			c.Reset(c.RequestCtx, "r")
			c.Response.Reset()
			p.Run(c, tt.up)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", tt.name, n)
		}
	}
}

func BenchmarkClosed(b *testing.B) {
	f := mustBuild(b, `{name: b-closed, error_ratio: 0.9, min_requests: 1000000}`)
	benchmark(b, f, func(c *filter.Ctx) { c.SetStatusCode(200) })
}

// BenchmarkOpen is the cost of an open breaker's answer: no upstream, a 503 with Retry-After.
func BenchmarkOpen(b *testing.B) {
	f := mustBuild(b, `{name: b-open, consecutive_failures: 1, open_for: 1h}`)
	call(b, f, fail(502))
	benchmark(b, f, func(c *filter.Ctx) { b.Fatal("upstream reached") })
}

func benchmark(b *testing.B, f *Filter, up func(*filter.Ctx)) {
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var req fasthttp.Request
		req.SetRequestURI("/orders")
		rc := &fasthttp.RequestCtx{}
		rc.Init(&req, nil, nil)
		c := &filter.Ctx{}
		for pb.Next() {
			c.Reset(rc, "r")
			rc.Response.Reset()
			p.Run(c, up)
		}
	})
}
