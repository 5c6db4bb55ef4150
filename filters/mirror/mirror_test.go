package mirror

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// queueOnly builds a filter whose shadow has no workers, so the test reads its queue, with a
// seeded draw.
func queueOnly(t testing.TB, fraction float64, maxBody, queue int) *Filter {
	t.Helper()
	p := &params{targets: []string{"127.0.0.1:9"}, fraction: fraction, maxBody: maxBody, queue: queue, workers: 1, timeout: time.Second}
	reg := telemetry.NewRegistry()
	sh := newShadow(p, "r", zerolog.Nop(), reg)
	r := rand.New(rand.NewPCG(3, 4))
	return &Filter{sh: sh, fraction: uint64(fraction * sampleSpace), maxBody: maxBody,
		draw: func() uint64 { return r.Uint64N(sampleSpace) }, release: sh.Close}
}

func ctx(t testing.TB, raw, body string) *filter.Ctx {
	c := filtertest.NewCtx(t, raw)
	if body != "" {
		c.Request.SetBodyString(body)
	}
	return c
}

func TestFraction(t *testing.T) {
	for _, fr := range []float64{0, 0.01, 0.1, 0.5, 1} {
		f := queueOnly(t, fr, 1024, 20000)
		c := ctx(t, "GET / HTTP/1.1\nHost: h\n", "")
		for i := 0; i < 10000; i++ {
			if f.OnRequest(c) != filter.Continue {
				t.Fatal("OnRequest stopped the request")
			}
		}
		got := float64(len(f.sh.queue)) / 100
		if got < fr*100-1.5 || got > fr*100+1.5 {
			t.Errorf("fraction %g: %.2f%% copied", fr, got)
		}
		if fr == 1 && len(f.sh.queue) != 10000 || fr == 0 && len(f.sh.queue) != 0 {
			t.Errorf("fraction %g: %d of 10000 copied", fr, len(f.sh.queue))
		}
	}
}

// TestCopyIsIndependent: the queued copy is the request as it was at OnRequest, unaffected by
// what later filters, the upstream or the request's end do to the client's request.
func TestCopyIsIndependent(t *testing.T) {
	f := queueOnly(t, 1, 1024, 4)
	c := ctx(t, "POST /orders?id=1 HTTP/1.1\nHost: api.example.com\nX-Tag: one\nX-Tag: two\n", `{"n":1}`)
	f.OnRequest(c)
	c.Request.Header.Set("X-Tag", "changed")
	c.Request.SetBodyString("changed")
	c.Request.SetRequestURI("/elsewhere")
	c.Request.Reset()
	req := <-f.sh.queue
	if got := string(req.Header.Method()); got != "POST" {
		t.Errorf("method %q", got)
	}
	if got := string(req.RequestURI()); got != "/orders?id=1" {
		t.Errorf("target %q", got)
	}
	if got := string(req.Host()); got != "api.example.com" {
		t.Errorf("host %q", got)
	}
	var tags []string
	for _, v := range req.Header.PeekAll("X-Tag") {
		tags = append(tags, string(v))
	}
	if strings.Join(tags, ",") != "one,two" {
		t.Errorf("X-Tag %v, want both values", tags)
	}
	if got := string(req.Body()); got != `{"n":1}` {
		t.Errorf("body %q", got)
	}
}

func TestBodyLimit(t *testing.T) {
	f := queueOnly(t, 1, 8, 4)
	f.OnRequest(ctx(t, "POST / HTTP/1.1\nHost: h\n", "12345678"))
	f.OnRequest(ctx(t, "POST / HTTP/1.1\nHost: h\n", "123456789"))
	streamed := ctx(t, "POST / HTTP/1.1\nHost: h\n", "")
	streamed.Request.SetBodyStream(strings.NewReader("abc"), 3)
	f.OnRequest(streamed)
	if len(f.sh.queue) != 1 || f.sh.skipped.Load() != 2 {
		t.Errorf("queued %d, skipped %d; want 1 (at the limit), 2 (over it, streamed)", len(f.sh.queue), f.sh.skipped.Load())
	}
	// The streamed body is still whole for the upstream.
	if b, _ := io.ReadAll(streamed.Request.BodyStream()); string(b) != "abc" {
		t.Errorf("streamed body after mirror: %q", b)
	}
}

// TestQueueFullDrops: with the queue full, copies are dropped and counted, and the request and
// its answer go on untouched.
func TestQueueFullDrops(t *testing.T) {
	f := queueOnly(t, 1, 1024, 2)
	for i := 0; i < 10; i++ {
		c := ctx(t, "GET / HTTP/1.1\nHost: h\n", "")
		if f.OnRequest(c) != filter.Continue {
			t.Fatal("OnRequest stopped the request")
		}
		f.OnResponse(c)
		if c.Response.StatusCode() != 200 || len(c.Response.Body()) != 0 {
			t.Fatalf("response touched: %d %q", c.Response.StatusCode(), c.Response.Body())
		}
	}
	if f.sh.queued.Load() != 2 || f.sh.dropped.Load() != 8 {
		t.Errorf("queued %d dropped %d, want 2 and 8", f.sh.queued.Load(), f.sh.dropped.Load())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.sh.dropped.Load() != 10 {
		t.Errorf("after close: dropped %d, want 10 (the 2 queued too)", f.sh.dropped.Load())
	}
}

func TestAllocs(t *testing.T) {
	for _, tt := range []struct {
		name     string
		fraction float64
		queue    int
	}{{"not sampled", 0, 4}, {"sampled out", 0.000001, 4}, {"queue full", 1, 1}} {
		f := queueOnly(t, tt.fraction, 1024, tt.queue)
		c := ctx(t, "GET / HTTP/1.1\nHost: h\n", "")
		f.OnRequest(c) // fills a queue of one
		n := testing.AllocsPerRun(1000, func() { f.OnRequest(c) })
		if n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", tt.name, n)
		}
	}
}

// shadowServer records what it receives; delay holds each answer.
type shadowServer struct {
	addr  string
	n     atomic.Int64
	mu    sync.Mutex
	heads []string
}

func startShadow(t *testing.T, delay time.Duration) *shadowServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &shadowServer{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		s.mu.Lock()
		s.heads = append(s.heads, fmt.Sprintf("%s %s %s %s", rc.Method(), rc.RequestURI(), rc.Host(), rc.PostBody()))
		s.mu.Unlock()
		s.n.Add(1)
		time.Sleep(delay)
		rc.SetStatusCode(500) // the shadow's answer never matters
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func build(t *testing.T, cfg string) *Filter {
	t.Helper()
	f := filtertest.MustNewFilter(t, New, Name, cfg).(*Filter)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func TestShadowReceivesCopies(t *testing.T) {
	s := startShadow(t, 0)
	f := build(t, fmt.Sprintf(`{targets: [%q], workers: 2}`, s.addr))
	for i := 0; i < 20; i++ {
		f.OnRequest(ctx(t, fmt.Sprintf("POST /o/%d HTTP/1.1\nHost: api.example.com\n", i), "b"))
	}
	waitFor(t, "20 copies", func() bool { return f.sh.sent.Load() == 20 })
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for _, h := range s.heads {
		if h == "POST /o/7 api.example.com b" {
			found = true
		}
	}
	if !found || len(s.heads) != 20 {
		t.Errorf("shadow saw %q", s.heads)
	}
}

// TestShadowDownOrSlow: a shadow refusing connections or holding every answer never holds up
// OnRequest; its copies are counted failed or dropped.
func TestShadowDownOrSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	f := build(t, fmt.Sprintf(`{targets: [%q], workers: 1, queue: 4}`, down))
	for i := 0; i < 4; i++ {
		f.OnRequest(ctx(t, "GET / HTTP/1.1\nHost: h\n", ""))
	}
	waitFor(t, "failed copies", func() bool { return f.sh.failed.Load() >= 1 })
	// While the shadow fails, copies are dropped before they are made: it is not dialled for
	// every request.
	if !f.sh.paused() {
		t.Error("not paused after a failed copy")
	}
	before := f.sh.dropped.Load()
	f.OnRequest(ctx(t, "GET / HTTP/1.1\nHost: h\n", ""))
	if f.sh.dropped.Load() != before+1 {
		t.Error("a copy was made while paused")
	}
	f.sh.pauseUntil.Store(0) // the pause is over: the next copy tries again
	if f.sh.paused() {
		t.Error("paused after the pause")
	}

	slow := startShadow(t, 2*time.Second)
	f = build(t, fmt.Sprintf(`{targets: [%q], workers: 1, queue: 2, timeout: 3s}`, slow.addr))
	start := time.Now()
	for i := 0; i < 100; i++ {
		f.OnRequest(ctx(t, "GET / HTTP/1.1\nHost: h\n", ""))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("100 requests took %s beside a slow shadow", d)
	}
	if f.sh.dropped.Load() < 90 {
		t.Errorf("dropped %d of 100 with a queue of 2 and one busy worker", f.sh.dropped.Load())
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{}`, "targets: at least one"},
		{`{targets: []}`, "targets: at least one"},
		{`{targets: ["nohost"]}`, "not host:port"},
		{`{targets: [":80"]}`, "not host:port"},
		{`{targets: ["a:80,b:80"]}`, "not host:port"},
		{`{targets: ["a:0"]}`, "port is not"},
		{`{targets: ["a:http"]}`, "port is not"},
		{`{targets: ["a:1"], fraction: 1.5}`, "fraction"},
		{`{targets: ["a:1"], fraction: -0.5}`, "fraction"},
		{`{targets: ["a:1"], max_body_bytes: 1GiB}`, "max_body_bytes"},
		{`{targets: ["a:1"], queue: -1}`, "queue"},
		{`{targets: ["a:1"], workers: 5000}`, "workers"},
		{`{targets: ["a:1"], timeout: -1s}`, "timeout"},
		{`{targets: ["a:1"], nope: 1}`, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			f, err := filtertest.NewFilter(t, New, Name, tt.cfg)
			if err == nil {
				f.(*Filter).Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	f := build(t, `{targets: ["127.0.0.1:9"]}`)
	p := f.sh.p
	if p.fraction != 1 || p.maxBody != defaultMaxBody || p.queue != defaultQueue || p.workers != defaultWorkers || p.timeout != defaultTimeout {
		t.Errorf("defaults: %s", p)
	}
	if f.fraction != sampleSpace {
		t.Errorf("fraction 1: threshold %d", f.fraction)
	}
}

// TestSharedAcrossReload: the same definition keeps the queue; another route gets its own.
func TestSharedAcrossReload(t *testing.T) {
	shared := filter.NewShared()
	mk := func(route, cfg string) *Filter {
		tree, err := filtertest.ParseYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f, err := New(filter.Env{Route: route, Shared: shared, Log: zerolog.Nop()}, func(v any) error {
			return config.DecodeStrict(tree, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		return f.(*Filter)
	}
	a := mk("r", `{targets: ["127.0.0.1:9"]}`)
	b := mk("r", `{targets: ["127.0.0.1:9"]}`)
	c := mk("other", `{targets: ["127.0.0.1:9"]}`)
	if a.sh != b.sh || a.sh == c.sh {
		t.Error("shadow not shared by definition and route")
	}
	for _, f := range []*Filter{a, b, c} {
		f.Close()
	}
	if shared.Len() != 0 {
		t.Errorf("%d shared values left", shared.Len())
	}
}

func BenchmarkNotSampled(b *testing.B) {
	f := queueOnly(b, 0.000001, 1024, 4)
	c := ctx(b, "GET / HTTP/1.1\nHost: h\n", "")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.OnRequest(c)
	}
}

// BenchmarkCopy is the cost of copying a request with a small body into the queue.
func BenchmarkCopy(b *testing.B) {
	f := queueOnly(b, 1, 1024, 1)
	c := ctx(b, "POST /orders HTTP/1.1\nHost: h\nContent-Type: application/json\n", `{"n":1}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.OnRequest(c)
		fasthttp.ReleaseRequest(<-f.sh.queue)
	}
}
