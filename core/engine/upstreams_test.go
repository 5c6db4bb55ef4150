package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

const resilientConfig = `
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams:
  api:
    targets: [%q, {addr: %q, weight: %d}]
    idle_timeout: 300ms
    health: { path: /healthz, interval: 30ms, timeout: 100ms, jitter: 0s, unhealthy_threshold: 1 }
routes:
  - name: fast
    match: { path: /fast }
    upstream: api
    timeout: 100ms
    retries: { attempts: 0 }
  - name: all
    upstream: api
`

// slowBackend answers after delay when the path is /fast, at once otherwise.
func slowBackend(t *testing.T, delay time.Duration) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		if string(rc.Path()) == "/fast" {
			time.Sleep(delay)
		}
		rc.SetBodyString("ok")
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	return ln.Addr().String(), func() { _ = srv.Shutdown() }
}

func targetState(e *Engine, addr string) string {
	for _, u := range e.Upstreams() {
		for _, ts := range u.Targets {
			if ts.Address == addr {
				return ts.State
			}
		}
	}
	return "absent"
}

// TestUpstreamStateSurvivesReload: a target marked unhealthy stays so across a reload that
// changes its weight, the pool is reused, route overrides apply, and every health checker
// stops at shutdown.
func TestUpstreamStateSurvivesReload(t *testing.T) {
	a, stopA := slowBackend(t, 300*time.Millisecond)
	defer stopA()
	b, stopB := slowBackend(t, 0)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	write := func(weight int) {
		if err := os.WriteFile(path, []byte(fmt.Sprintf(resilientConfig, a, b, weight)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	e, err := New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(ln) }()
	// A short idle time: the client's connection cleaner goroutine outlives it by that much.
	c := &fasthttp.Client{MaxIdleConnDuration: 100 * time.Millisecond}
	url := "http://" + ln.Addr().String()

	// The route override: /fast times out after 100 ms on the slow target a (no retry), and is
	// served by b; the upstream's own 30 s timeout would have waited.
	saw504 := false
	for i := 0; i < 4; i++ {
		start := time.Now()
		st, _, _, err := get(c, url+"/fast")
		if err != nil {
			t.Fatal(err)
		}
		if st == 504 {
			saw504 = true
			if d := time.Since(start); d > 250*time.Millisecond {
				t.Errorf("route timeout 100ms answered 504 after %s", d)
			}
		}
	}
	if !saw504 {
		t.Error("route timeout override never applied")
	}

	stopB()
	deadline := time.Now().Add(3 * time.Second)
	for targetState(e, b) != "unhealthy" {
		if time.Now().After(deadline) {
			t.Fatalf("target %s state %s, want unhealthy; upstreams %+v", b, targetState(e, b), e.Upstreams())
		}
		time.Sleep(5 * time.Millisecond)
	}
	objects := e.Shared().Len()
	write(5)
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if got := targetState(e, b); got != "unhealthy" {
		t.Errorf("after reload target state %s, want unhealthy (kept)", got)
	}
	for _, u := range e.Upstreams() {
		for _, ts := range u.Targets {
			if ts.Address == b && (ts.Weight != 5 || ts.LastCheck == nil || ts.LastCheck.OK) {
				t.Errorf("after reload %+v, want weight 5 and a failed last check", ts)
			}
		}
	}
	if got := e.Shared().Len(); got != objects {
		t.Errorf("shared objects %d after reload, want %d (the pool reused)", got, objects)
	}
	// Every request now goes to a, the only healthy target.
	for i := 0; i < 5; i++ {
		if st, body, _, err := get(c, url+"/"); err != nil || st != 200 || body != "ok" {
			t.Fatalf("status %d body %q err %v", st, body, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := e.Shared().Len(); got != 0 {
		t.Errorf("shared store holds %d objects after shutdown, want 0", got)
	}
	// No health checker or DNS refresher outlives the last snapshot. (fasthttp's own worker
	// pool cleaners linger up to 10 s after a server stops; they are not the gateway's.)
	// Shutdown waits for each loop's last deferred call (it closes a done channel); the
	// goroutine itself ends an instant later, so a dump taken at once may still show it.
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, fn := range []string{"checkLoop", "refreshLoop"} {
			if strings.Contains(stacks, fn) {
				left = append(left, fn)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v still running 2s after shutdown", left)
		}
	}
}
