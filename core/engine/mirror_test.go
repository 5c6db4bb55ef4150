package engine

import (
	"flag"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry"
)

var mirrorSoak = flag.Bool("mirror-soak", false,
	"assert that a down or slow shadow keeps the client p99 within 10% of the unmirrored route's (20,000 requests each; make soak)")

const mirrorConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q] }
routes:
  - name: plain
    match: { path_prefix: /plain }
    upstream: be
  - name: mirror-down
    match: { path_prefix: /down }
    upstream: be
    filters:
      - mirror: { targets: [%q], queue: 64, workers: 2, timeout: 1s }
  - name: mirror-slow
    match: { path_prefix: /slow }
    upstream: be
    filters:
      - mirror: { targets: [%q], queue: 64, workers: 2, timeout: 5s }
`

// TestMirrorShadowDownOrSlow: beside a shadow that refuses connections and one that holds
// every answer for a second, clients get their answers as on a route without mirror (the three
// routes' latencies are measured in the same run, interleaved); the copies the shadows could
// not take are counted failed or dropped. The p99 comparison is asserted under -mirror-soak.
func TestMirrorShadowDownOrSlow(t *testing.T) {
	be := backend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	slowLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slowSrv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { time.Sleep(time.Second) }}
	go slowSrv.Serve(slowLn) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = slowLn.Close() })

	cfg, err := parseConfig("mirror.yaml", []byte(fmt.Sprintf(mirrorConfig, be, down, slowLn.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	gw := serve(t, e)

	n := 1000
	if *mirrorSoak {
		n = 20000
	}
	paths := []string{"/plain", "/down", "/slow"}
	lat := make([][]time.Duration, len(paths))
	var mu sync.Mutex
	var wg sync.WaitGroup
	const workers = 4
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &fasthttp.HostClient{Addr: gw}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			mine := make([][]time.Duration, len(paths))
			for i := 0; i < n/workers; i++ {
				for p, path := range paths {
					req.SetRequestURI("http://x" + path)
					t0 := time.Now()
					err := client.DoTimeout(req, resp, 5*time.Second)
					d := time.Since(t0)
					if err != nil || resp.StatusCode() != 200 || string(resp.Body()) != path {
						t.Errorf("%s: %v, status %d, body %q", path, err, resp.StatusCode(), resp.Body())
						return
					}
					mine[p] = append(mine[p], d)
				}
			}
			mu.Lock()
			for p := range paths {
				lat[p] = append(lat[p], mine[p]...)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	p99 := make([]time.Duration, len(paths))
	for p := range paths {
		sort.Slice(lat[p], func(i, j int) bool { return lat[p][i] < lat[p][j] })
		p99[p] = lat[p][len(lat[p])*99/100]
		t.Logf("%-6s %d requests: p50 %s, p99 %s", paths[p], len(lat[p]), lat[p][len(lat[p])/2], p99[p])
	}
	if *mirrorSoak {
		for p := 1; p < len(paths); p++ {
			if float64(p99[p]) > 1.1*float64(p99[0]) {
				t.Errorf("%s: p99 %s is more than 10%% above the unmirrored %s", paths[p], p99[p], p99[0])
			}
		}
	}
	group := telemetry.Metrics.Group("mirror")
	t.Logf("mirror counters: %v", group)
	waitUntil(t, "failed copies to the down shadow", func() bool { return telemetry.Metrics.Group("mirror")["mirror-down"]["failed"] > 0 })
	if slow := group["mirror-slow"]; slow["dropped"] == 0 || slow["queued"]+slow["dropped"] != int64(len(lat[2])) {
		t.Errorf("slow shadow: %v; want dropped copies, and queued + dropped = %d requests", slow, len(lat[2]))
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMirrorCopiesThroughGateway: the shadow receives the request the upstream receives (after
// the filters before mirror), a small body with it; a large body, which the gateway streams, is
// not copied and reaches the upstream whole.
func TestMirrorCopiesThroughGateway(t *testing.T) {
	type seen struct{ head, body string }
	got := make(chan seen, 16)
	shLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shSrv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		got <- seen{fmt.Sprintf("%s %s %s %s", rc.Method(), rc.RequestURI(), rc.Host(), rc.Request.Header.Peek("X-Stage")), string(rc.PostBody())}
	}}
	go shSrv.Serve(shLn) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = shSrv.Shutdown() })

	beLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	beSrv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { rc.SetBodyString(fmt.Sprint(len(rc.PostBody()))) }}
	go beSrv.Serve(beLn) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = beSrv.Shutdown() })

	cfg, err := parseConfig("mirror.yaml", []byte(fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q] }
routes:
  - name: mirrored
    match: { path_prefix: / }
    upstream: be
    filters:
      - headers: { request: { set: { X-Stage: rewritten } } }
      - mirror: { targets: [%q], max_body_bytes: 1KiB }
`, beLn.Addr().String(), shLn.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	gw := serve(t, e)
	client := &fasthttp.HostClient{Addr: gw}
	post := func(body string) string {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://shop.example/orders?x=1")
		req.Header.SetMethod("POST")
		req.SetBodyString(body)
		if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return string(resp.Body())
	}
	if got := post(`{"n":1}`); got != "7" {
		t.Fatalf("upstream got %s bytes, want 7", got)
	}
	select {
	case s := <-got:
		if s.head != "POST /orders?x=1 shop.example rewritten" || s.body != `{"n":1}` {
			t.Errorf("shadow saw %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the shadow got no copy")
	}
	big := string(make([]byte, 4<<20))
	if got := post(big); got != fmt.Sprint(len(big)) {
		t.Fatalf("upstream got %s bytes of a large body, want %d", got, len(big))
	}
	select {
	case s := <-got:
		t.Errorf("a large body was copied: %s, %d bytes", s.head, len(s.body))
	case <-time.After(200 * time.Millisecond):
	}
	if sk := telemetry.Metrics.Group("mirror")["mirrored"]["skipped"]; sk != 1 {
		t.Errorf("skipped %d, want 1", sk)
	}
}
