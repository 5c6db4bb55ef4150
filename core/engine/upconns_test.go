package engine

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry/promtest"
)

// connBackend is a loopback backend that counts the connections the gateway holds to it, as
// its listener sees them: opened so far, open now and the most open at once. It never closes
// an idle connection itself, so every close it sees was the gateway's.
type connBackend struct {
	addr                string
	opened, open, peak  atomic.Int64
	hold                time.Duration // each request is answered after this
	gate                chan struct{} // when set, each request waits for it to close
	inHandler, answered atomic.Int64
}

func startConnBackend(t *testing.T, hold time.Duration, gate chan struct{}) *connBackend {
	t.Helper()
	b := &connBackend{hold: hold, gate: gate}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	srv := &fasthttp.Server{
		Handler: func(rc *fasthttp.RequestCtx) {
			b.inHandler.Add(1)
			if b.gate != nil {
				<-b.gate
			}
			time.Sleep(b.hold)
			b.answered.Add(1)
			rc.SetBodyString("ok")
		},
		ConnState: func(_ net.Conn, st fasthttp.ConnState) {
			switch st {
			case fasthttp.StateNew:
				b.opened.Add(1)
				n := b.open.Add(1)
				for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
				}
			case fasthttp.StateClosed:
				b.open.Add(-1)
			}
		},
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return b
}

// targetConns reads one target's connections from the admin view (ok false: not listed) and
// from the Prometheus gauge.
func targetConns(t *testing.T, e *Engine, upstream, addr string) (view int, listed bool, gauge float64) {
	t.Helper()
	for _, u := range e.Upstreams() {
		if u.Name != upstream {
			continue
		}
		for _, ts := range u.Targets {
			if ts.Address == addr {
				view, listed = ts.Connections, true
			}
		}
	}
	return view, listed, promtest.Value(t, "weir_upstream_connections", "upstream", upstream, "target", addr)
}

// TestUpstreamConnsBoundedAndTrimmed: 32 concurrent clients through an upstream with
// max_conns 4 never make the gateway open more than 4 connections to the target, as the
// backend's listener, the admin view and the gauge all see; once the burst is over, the
// connections idle for idle_timeout are closed and both read 0.
func TestUpstreamConnsBoundedAndTrimmed(t *testing.T) {
	be := startConnBackend(t, 50*time.Millisecond, nil)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams:
  conns-bounded: { targets: [%q], max_conns: 4, max_conn_wait: 10s, idle_timeout: 200ms }
routes: [ { name: conns-bounded, upstream: conns-bounded } ]
`, be.addr))
	e, addr := start(t, path)

	// Sample the view and the gauge while the burst runs.
	var maxView, maxGauge atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			v, _, g := targetConns(t, e, "conns-bounded", be.addr)
			if int64(v) > maxView.Load() {
				maxView.Store(int64(v))
			}
			if int64(g) > maxGauge.Load() {
				maxGauge.Store(int64(g))
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	const clients, each = 32, 3
	var wg sync.WaitGroup
	errs := make(chan string, clients*each)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.Client{MaxIdleConnDuration: 100 * time.Millisecond}
			for range each {
				if st, body, _, err := get(c, "http://"+addr+"/"); err != nil || st != 200 || body != "ok" {
					errs <- fmt.Sprintf("status %d body %q err %v", st, body, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if got := be.answered.Load(); got != clients*each {
		t.Errorf("backend answered %d requests, want %d", got, clients*each)
	}
	// 32 clients waiting on 4 connections: the pool grows to its bound, never past it.
	if got := be.peak.Load(); got != 4 {
		t.Errorf("backend saw at most %d connections at once, want 4 (max_conns)", got)
	}
	if v, g := maxView.Load(), maxGauge.Load(); v > 4 || g > 4 || v == 0 || g == 0 {
		t.Errorf("during the burst /upstreams showed up to %d connections and the gauge %d, want 1..4", v, g)
	}

	// Trimmed: nothing uses the connections now; idle_timeout closes them.
	waitFor(t, "the backend's connections to close", func() bool { return be.open.Load() == 0 })
	waitFor(t, "the view and the gauge to read 0", func() bool {
		v, listed, g := targetConns(t, e, "conns-bounded", be.addr)
		return listed && v == 0 && g == 0
	})
	if got := promtest.Value(t, "weir_upstream_idle_connections", "upstream", "conns-bounded", "target", be.addr); got != 0 {
		t.Errorf("weir_upstream_idle_connections = %v after trimming, want 0", got)
	}
}

// TestUpstreamConnsWaitThen503: with every connection busy, a request waits max_conn_wait for
// one and is answered 503; the requests holding the connections finish normally.
func TestUpstreamConnsWaitThen503(t *testing.T) {
	gate := make(chan struct{})
	be := startConnBackend(t, 0, gate)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	defer release()
	path := filepath.Join(t.TempDir(), "weir.yaml")
	const wait = 100 * time.Millisecond
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams:
  conns-wait: { targets: [%q], max_conns: 2, max_conn_wait: %s, retries: { attempts: 0 } }
routes: [ { name: conns-wait, upstream: conns-wait } ]
`, be.addr, wait))
	e, addr := start(t, path)

	type result struct {
		status int
		took   time.Duration
		err    error
	}
	do := func(out chan<- result) {
		c := &fasthttp.Client{MaxIdleConnDuration: 100 * time.Millisecond}
		start := time.Now()
		st, _, _, err := get(c, "http://"+addr+"/")
		out <- result{st, time.Since(start), err}
	}
	holders := make(chan result, 2)
	for range 2 {
		go do(holders)
	}
	waitFor(t, "the two holders to reach the backend", func() bool { return be.inHandler.Load() == 2 })
	if v, _, g := targetConns(t, e, "conns-wait", be.addr); v != 2 || g != 2 {
		t.Errorf("with both connections busy /upstreams shows %d, the gauge %v; want 2", v, g)
	}

	waiters := make(chan result, 3)
	for range 3 {
		go do(waiters)
	}
	for range 3 {
		r := <-waiters
		if r.err != nil || r.status != 503 {
			t.Errorf("request beyond max_conns: status %d err %v, want 503", r.status, r.err)
		}
		if r.took < wait {
			t.Errorf("request beyond max_conns answered after %s, before max_conn_wait %s", r.took, wait)
		}
	}
	if got := be.inHandler.Load(); got != 2 {
		t.Errorf("backend received %d requests, want 2: none beyond max_conns", got)
	}
	release()
	for range 2 {
		if r := <-holders; r.err != nil || r.status != 200 {
			t.Errorf("holder: status %d err %v, want 200", r.status, r.err)
		}
	}
	if got := be.peak.Load(); got != 2 {
		t.Errorf("backend saw at most %d connections at once, want 2", got)
	}
}

// TestUpstreamConnsAcrossReload: a reload that keeps an upstream and its transport settings
// keeps its warm connections (the pool is reused, nothing is dialled again), and one that
// removes a target closes that target's idle connections at once, long before idle_timeout.
func TestUpstreamConnsAcrossReload(t *testing.T) {
	a := startConnBackend(t, 0, nil)
	b := startConnBackend(t, 0, nil)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	write := func(targets string) {
		writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams:
  conns-reload: { targets: %s, idle_timeout: 1m }
routes: [ { name: conns-reload, upstream: conns-reload } ]
`, targets))
	}
	write(fmt.Sprintf("[%q, %q]", a.addr, b.addr))
	e, addr := start(t, path)
	c := &fasthttp.Client{MaxIdleConnDuration: 100 * time.Millisecond}
	for range 4 { // round robin: two each, one connection each
		if st, _, _, err := get(c, "http://"+addr+"/"); err != nil || st != 200 {
			t.Fatalf("status %d err %v", st, err)
		}
	}
	if a.opened.Load() != 1 || b.opened.Load() != 1 {
		t.Fatalf("backends accepted %d and %d connections, want 1 each", a.opened.Load(), b.opened.Load())
	}

	// The same targets with another weight: same pool, same connections.
	write(fmt.Sprintf("[%q, {addr: %q, weight: 2}]", a.addr, b.addr))
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if st, _, _, err := get(c, "http://"+addr+"/"); err != nil || st != 200 {
			t.Fatalf("status %d err %v", st, err)
		}
	}
	if a.opened.Load() != 1 || b.opened.Load() != 1 || a.open.Load() != 1 || b.open.Load() != 1 {
		t.Errorf("after a reload keeping both targets, backends accepted %d and %d connections (%d and %d open), want 1 each: the warm ones reused",
			a.opened.Load(), b.opened.Load(), a.open.Load(), b.open.Load())
	}

	// b removed: its idle connection closes now, not after the minute of idle_timeout; a's stays.
	write(fmt.Sprintf("[%q]", a.addr))
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed target's connection to close", func() bool { return b.open.Load() == 0 })
	if _, listed, g := targetConns(t, e, "conns-reload", b.addr); listed || g != 0 {
		t.Errorf("removed target: listed %v, gauge %v; want gone", listed, g)
	}
	for range 3 {
		if st, _, _, err := get(c, "http://"+addr+"/"); err != nil || st != 200 {
			t.Fatalf("status %d err %v", st, err)
		}
	}
	if a.opened.Load() != 1 || a.open.Load() != 1 {
		t.Errorf("kept target: %d connections accepted, %d open; want its one warm connection", a.opened.Load(), a.open.Load())
	}
	if v, listed, g := targetConns(t, e, "conns-reload", a.addr); !listed || v != 1 || g != 1 {
		t.Errorf("kept target: listed %v, /upstreams %d, gauge %v connections; want 1", listed, v, g)
	}
}
