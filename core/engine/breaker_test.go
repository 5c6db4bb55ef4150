package engine

import (
	"flag"
	"fmt"
	"net"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry"
)

var breakerSoak = flag.Bool("breaker-soak", false,
	"assert the open breaker's answer latency (p99 under 1 ms over 20,000 requests; make soak)")

const breakerConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, connect_timeout: 500ms }
routes:
  - name: guarded
    match: { path_prefix: / }
    upstream: be
    filters:
      - breaker: { name: e2e-guarded, consecutive_failures: 5, open_for: %s }
`

// countingBackend serves 200 on addr ("127.0.0.1:0" for any port) and counts the requests.
func countingBackend(t *testing.T, addr string) (string, *atomic.Int64, func()) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a backend just stopped may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	n := &atomic.Int64{}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { n.Add(1); rc.SetBodyString("ok") }}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = srv.Shutdown()
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), n, stop
}

// TestBreakerBackendKilled: the backend dies under load; the breaker opens after exactly the
// configured failures in a row, answers 503 with Retry-After without any upstream traffic while
// open, and closes with the first probe once the backend is back and the cool-down is over.
func TestBreakerBackendKilled(t *testing.T) {
	addr, hits, stop := countingBackend(t, "127.0.0.1:0")
	openFor := 2 * time.Second
	cfg, err := parseConfig("breaker.yaml", []byte(fmt.Sprintf(breakerConfig, addr, openFor)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	gw := serve(t, e)
	client := &fasthttp.HostClient{Addr: gw, MaxConns: 16}
	do := func() (int, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://x/orders")
		if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatalf("gateway: %v", err)
		}
		return resp.StatusCode(), string(resp.Header.Peek("Retry-After"))
	}
	state := func() int64 { return telemetry.Metrics.Group("breakers")["e2e-guarded"]["state"] }

	// Under load.
	for i := 0; i < 200; i++ {
		if st, _ := do(); st != 200 {
			t.Fatalf("healthy backend: status %d", st)
		}
	}
	if hits.Load() != 200 {
		t.Fatalf("backend saw %d requests, want 200", hits.Load())
	}

	stop()
	for i := 1; i <= 5; i++ {
		st, ra := do()
		if st != 502 || ra != "" {
			t.Fatalf("failure %d after the kill: status %d, Retry-After %q; want the upstream's 502", i, st, ra)
		}
	}
	if state() != 1 {
		t.Fatalf("after 5 failures: breaker state %d, want 1 (open)", state())
	}
	opened := time.Now()

	// The backend returns at once; the open breaker still sends it nothing.
	_, hits, _ = countingBackend(t, addr)
	var lat []time.Duration
	n := 2000
	if *breakerSoak {
		n = 20000
	}
	for i := 0; i < n && time.Since(opened) < openFor/2; i++ {
		t0 := time.Now()
		st, ra := do()
		lat = append(lat, time.Since(t0))
		if st != 503 || ra == "" || ra == "0" {
			t.Fatalf("open request %d: status %d, Retry-After %q; want 503 with a Retry-After", i, st, ra)
		}
	}
	if h := hits.Load(); h != 0 {
		t.Fatalf("open breaker let %d requests reach the upstream", h)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := lat[len(lat)*99/100]
	t.Logf("open breaker: %d answers, p50 %s, p99 %s (client round trip over loopback)", len(lat), lat[len(lat)/2], p99)
	if *breakerSoak && p99 >= time.Millisecond {
		t.Errorf("open breaker p99 %s, want under 1ms", p99)
	}

	// After the cool-down, the first request is the probe: it reaches the backend and closes
	// the breaker.
	time.Sleep(time.Until(opened.Add(openFor)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := do()
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker did not close: last status %d", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := hits.Load(); h != 1 {
		t.Errorf("closing took %d upstream requests, want 1 probe", h)
	}
	if state() != 0 {
		t.Errorf("after the probe: breaker state %d, want 0 (closed)", state())
	}
	for i := 0; i < 50; i++ {
		if st, _ := do(); st != 200 {
			t.Fatalf("closed again: status %d", st)
		}
	}
}
