package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/testkit"
)

// make bench runs the full size (go test -run TestScale -scale ./bench); make test runs the same
// code at a tenth of it, so the harness cannot rot. Nothing here asserts a duration: the figures
// are printed for bench/RESULTS.md.
var scaleFull = flag.Bool("scale", false, "TestScale: 10,000 routes and 1,000 upstreams, 10 s of load")

// scaleSize is one run's shape.
type scaleSize struct {
	routes, upstreams int
	load              time.Duration // per phase: steady, then reloading
	clients           int
}

// scaleConfig writes a config with n routes over u upstreams, every target the one backend.
// The routes mix the matchers a large API fleet uses: exact paths, prefixes with parameters,
// hosts and methods, and one in ten has a filter. marker changes one value, so two configs with
// different markers hash differently and a reload swaps a snapshot.
func scaleConfig(sz scaleSize, backend string, marker int) []byte {
	var b bytes.Buffer
	b.WriteString("access_log: { enabled: false }\nserver: { plugin_cache_dir: \"off\", drain_timeout: 5s }\nupstreams:\n")
	for i := range sz.upstreams {
		fmt.Fprintf(&b, "  up%d: { targets: [%q] }\n", i, backend)
	}
	b.WriteString("routes:\n")
	for i := range sz.routes {
		up := i % sz.upstreams
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - { name: r%d, match: { path: /svc%d/items }, upstream: up%d", i, i, up)
		case 1:
			fmt.Fprintf(&b, "  - { name: r%d, match: { path: \"/svc%d/items/{id}\", methods: [GET, PUT] }, upstream: up%d", i, i, up)
		case 2:
			fmt.Fprintf(&b, "  - { name: r%d, match: { path_prefix: /svc%d/, host: \"api%d.example.com\" }, upstream: up%d", i, i, i%50, up)
		default:
			fmt.Fprintf(&b, "  - { name: r%d, match: { path_prefix: /svc%d/ }, upstream: up%d", i, i, up)
		}
		if i%10 == 0 {
			fmt.Fprintf(&b, ", filters: [ { headers: { request: { set: { X-Route: \"r%d-%d\" } } } } ]", i, marker)
		}
		b.WriteString(" }\n")
	}
	return b.Bytes()
}

func TestScale(t *testing.T) {
	sz := scaleSize{routes: 1000, upstreams: 100, load: time.Second, clients: 4}
	if *scaleFull {
		sz = scaleSize{routes: 10000, upstreams: 1000, load: 10 * time.Second, clients: 16}
	}
	backend := startBackend(t)

	rssBefore := rssKiB()
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	yaml := scaleConfig(sz, backend, 0)
	start := time.Now()
	cfg, err := config.Parse("scale.yaml", yaml)
	if err != nil {
		t.Fatal(err)
	}
	parsed := time.Since(start)
	e, err := engine.NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	addr := testkit.Serve(t, e)

	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	rssAfter := rssKiB()

	// Reload time: parse and apply a config that differs in one filter value, five times.
	// The CPU time is the steadier figure on a shared machine, where wall time includes waiting
	// for a core.
	var reloads []time.Duration
	cpu0 := cpuTime()
	for i := 1; i <= 5; i++ {
		start := time.Now()
		cfg, err := config.Parse("scale.yaml", scaleConfig(sz, backend, i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Apply(cfg, "bench"); err != nil {
			t.Fatal(err)
		}
		reloads = append(reloads, time.Since(start))
	}
	reloadCPU := (cpuTime() - cpu0) / 5
	slices.Sort(reloads)

	// Latency under load, first steady, then while the config is reloaded back to back.
	steady, steadyFail := scaleLoad(t, addr, sz, nil)
	var n atomic.Int64
	reloading, reloadFail := scaleLoad(t, addr, sz, func() {
		cfg, err := config.Parse("scale.yaml", scaleConfig(sz, backend, 100+int(n.Add(1))))
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := e.Apply(cfg, "bench"); err != nil {
			t.Error(err)
		}
	})

	fmt.Printf("scale: %d routes, %d upstreams: parse %v, build (parse+snapshot) %v, heap %.1f MiB, RSS +%d MiB\n",
		sz.routes, sz.upstreams, parsed.Round(time.Millisecond), built.Round(time.Millisecond),
		float64(ms1.HeapInuse-min(ms0.HeapInuse, ms1.HeapInuse))/(1<<20), (rssAfter-rssBefore)/1024)
	fmt.Printf("scale: reload (parse+build+swap) median %v, max %v, CPU %v per reload\n",
		reloads[len(reloads)/2].Round(time.Millisecond), reloads[len(reloads)-1].Round(time.Millisecond), reloadCPU.Round(time.Millisecond))
	fmt.Printf("scale: steady    %6d req, p50 %v, p99 %v, failed %d\n", len(steady), pct(steady, 50), pct(steady, 99), steadyFail)
	fmt.Printf("scale: reloading %6d req, p50 %v, p99 %v, failed %d, %d reloads\n", len(reloading), pct(reloading, 50), pct(reloading, 99), reloadFail, n.Load())
	if steadyFail+reloadFail > 0 {
		t.Errorf("%d requests failed (%d steady, %d while reloading), want 0", steadyFail+reloadFail, steadyFail, reloadFail)
	}
}

// scaleLoad runs sz.clients keep-alive clients for sz.load over routes spread across the table,
// with reload (when set) called back to back meanwhile; it returns every latency and how many
// requests failed (no answer, or not the backend's 200).
func scaleLoad(t *testing.T, addr string, sz scaleSize, reload func()) ([]time.Duration, int64) {
	var (
		mu     sync.Mutex
		all    []time.Duration
		failed atomic.Int64
		wg     sync.WaitGroup
		stop   atomic.Bool
	)
	c := &fasthttp.HostClient{Addr: addr, MaxConns: sz.clients}
	for w := range sz.clients {
		wg.Go(func() {
			var lat []time.Duration
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := w; !stop.Load(); i += sz.clients {
				// Every fourth route is an exact path; those reach the backend on any host.
				r := (i * 7919 % sz.routes) &^ 3
				req.SetRequestURI(fmt.Sprintf("http://x/svc%d/items", r))
				start := time.Now()
				err := c.DoTimeout(req, resp, 5*time.Second)
				lat = append(lat, time.Since(start))
				if err != nil || resp.StatusCode() != 200 {
					if failed.Add(1) == 1 {
						t.Logf("first failure: %v, status %d, body %q", err, resp.StatusCode(), resp.Body())
					}
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	done := make(chan struct{})
	if reload != nil {
		go func() {
			defer close(done)
			for !stop.Load() {
				reload()
			}
		}()
	} else {
		close(done)
	}
	time.Sleep(sz.load)
	stop.Store(true)
	wg.Wait()
	<-done
	slices.Sort(all)
	return all, failed.Load()
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[(len(d)-1)*p/100].Round(time.Microsecond)
}

// startBackend answers 200 to everything on a loopback port.
func startBackend(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { rc.SetBodyString("ok") }}
	go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssKiB is this process's resident set, from /proc (0 where there is none).
func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	return 0
}

// TestStartupPlugins times engine start with 10 plugins, first with an empty compile cache and
// then with the cache the first start filled (a restart). The ten modules are the demo plugin
// with a different custom section appended to each, so they are ten distinct compilations that
// behave the same.
func TestStartupPlugins(t *testing.T) {
	wasm, err := os.ReadFile("../config/plugins/hello.wasm")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "access_log: { enabled: false }\nserver: { plugin_cache_dir: %q }\nupstreams: { be: { targets: [\"127.0.0.1:1\"] } }\nplugins:\n", filepath.Join(dir, "cache"))
	for i := range 10 {
		name := fmt.Sprintf("p%d.wasm", i)
		if err := os.WriteFile(filepath.Join(dir, name), withCustomSection(wasm, fmt.Sprintf("weir-bench-%d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  p%d: { file: %q }\n", i, filepath.Join(dir, name))
	}
	b.WriteString("routes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: be\n    filters:\n")
	for i := range 10 {
		fmt.Fprintf(&b, "      - p%d: {}\n", i)
	}
	start := func() time.Duration {
		t0 := time.Now()
		cfg, err := config.Parse(filepath.Join(dir, "weir.yaml"), []byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		e, err := engine.NewFromConfig(cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		if err := e.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cold := start()
	warm := start()
	fmt.Printf("startup with 10 plugins: cold compile cache %v, warm %v\n", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
}

// withCustomSection returns wasm with a custom section named name appended: the same module to
// run, a different one to hash and compile.
func withCustomSection(wasm []byte, name string) []byte {
	payload := append(append([]byte{byte(len(name))}, name...), "bench"...)
	out := append(slices.Clone(wasm), 0, byte(len(payload)))
	return append(out, payload...)
}

// BenchmarkScaleConfig is the config part of a reload of the full-size table: parse and decode
// (most of it), then the snapshot build (router, upstreams, pipelines).
func BenchmarkScaleConfig(b *testing.B) {
	yaml := scaleConfig(scaleSize{routes: 10000, upstreams: 1000}, "127.0.0.1:9", 0)
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := config.Parse("scale.yaml", yaml); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("build", func(b *testing.B) {
		cfg, err := config.Parse("scale.yaml", yaml)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			e, err := engine.NewFromConfig(cfg, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
