package wasmhost

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/testkit"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// Fault guests, each written out in WebAssembly text in its comment.
// (loop (br 0))
func loopForever() *wasmtest.Code { return wasmtest.NewCode().Loop().Br(0).End() }

// (block (loop (br_if 1 (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) (br 0))) unreachable
func memoryBomb() *wasmtest.Code {
	return wasmtest.NewCode().Block().Loop().I32(1).MemoryGrow().I32(-1).I32Eq().BrIf(1).Br(0).End().End().Unreachable()
}

// (unreachable)
func trap() *wasmtest.Code { return wasmtest.NewCode().Unreachable() }

func faultGuest(req, resp *wasmtest.Code) []byte {
	if req == nil {
		req = wasmtest.NewCode()
	}
	g := wasmtest.Guest{HandleRequest: req.I64(1), HandleResponse: resp}
	return g.Module().Encode()
}

func TestFaults(t *testing.T) {
	const timeout = 50 * time.Millisecond
	tests := []struct {
		name        string
		wasm        []byte
		memMB       int
		wantTimeout bool
	}{
		{"infinite loop in handle_request", faultGuest(loopForever(), nil), 0, true},
		{"infinite loop in handle_response", faultGuest(nil, loopForever()), 0, true},
		{"memory bomb", faultGuest(memoryBomb(), nil), 2, false},
		{"trap in handle_request", faultGuest(trap(), nil), 0, false},
		{"trap in handle_response", faultGuest(nil, trap()), 0, false},
		{"bad pointer", probeGuest("", "", 1, []step{call("get_uri", 1<<30, 64)}, nil), 0, false},
		{"huge header write", probeGuest("X-Big", "", 1, []step{call("add_header_value", kResp, offA, 5, offB, 1<<20)}, nil), 0, false},
	}
	for _, tt := range tests {
		for _, open := range []bool{false, true} {
			name := tt.name + map[bool]string{false: "/fail_closed", true: "/fail_open"}[open]
			t.Run(name, func(t *testing.T) {
				spec := testSpec("fault", tt.wasm)
				spec.Timeout, spec.MemoryMB, spec.FailOpen = timeout, tt.memMB, open
				if !tt.wantTimeout {
					// A fault that is not a loop must be reported as what it is even when a
					// loaded machine stalls the call past a short deadline.
					spec.Timeout = 5 * time.Second
				}
				f := newTestFilter(t, spec)
				rc := newRequest("GET", "/")
				start := time.Now()
				reached := serve(f, rc)
				took := time.Since(start)
				t.Logf("answered in %s (deadline %s)", took, timeout)
				if took > spec.Timeout+time.Second {
					t.Errorf("took %s; the deadline is %s", took, spec.Timeout)
				}
				st := f.m.stats.Values()
				if tt.wantTimeout && st.Timeouts != 1 || !tt.wantTimeout && st.Traps != 1 {
					t.Errorf("counters = %+v, want one %s", st, map[bool]string{true: "timeout", false: "trap"}[tt.wantTimeout])
				}
				if st.Discarded != 1 {
					t.Errorf("discarded = %d, want 1: a faulted instance must never be reused", st.Discarded)
				}
				inResponse := strings.Contains(tt.name, "handle_response")
				switch {
				case open && !reached && !inResponse:
					t.Error("fail open must skip the plugin and reach the upstream")
				case open && rc.Response.StatusCode() != 201:
					t.Errorf("fail open: status = %d, want the upstream's 201", rc.Response.StatusCode())
				case !open && rc.Response.StatusCode() != 500:
					t.Errorf("fail closed: status = %d, want 500", rc.Response.StatusCode())
				}
				// The plugin still works for the next request on a fresh instance (the guest
				// faults again, but it runs: the pool was not poisoned).
				serve(f, newRequest("GET", "/"))
				if got := f.m.stats.Calls.Load(); got < st.Calls+1 {
					t.Errorf("calls after fault = %d, want more than %d", got, st.Calls)
				}
			})
		}
	}
}

// TestFallbackWatcherStopsLoops covers modules the rewriter leaves alone: wazero's per-call
// watcher enforces the same deadline.
func TestFallbackWatcherStopsLoops(t *testing.T) {
	useInterruptChecks = false
	defer func() { useInterruptChecks = true }()
	spec := testSpec("watcher", faultGuest(loopForever(), nil))
	spec.Timeout = 20 * time.Millisecond
	f := newTestFilter(t, spec)
	if f.m.instrumented {
		t.Fatal("module was instrumented")
	}
	rc := newRequest("GET", "/")
	start := time.Now()
	serve(f, rc)
	if took := time.Since(start); rc.Response.StatusCode() != 500 || f.m.stats.Timeouts.Load() != 1 || took > 2*time.Second {
		t.Errorf("status %d, timeouts %d, took %s", rc.Response.StatusCode(), f.m.stats.Timeouts.Load(), took)
	}
	// The header guest still works under the watcher.
	g := newTestFilter(t, testSpec("watcher-ok", headerGuest()))
	rc = newRequest("GET", "/")
	if !serve(g, rc) || string(rc.Request.Header.Peek("X-Plugin")) != "on" {
		t.Error("header guest failed under the watcher")
	}
}

// TestFaultyPluginDoesNotSlowOthers runs a looping plugin flat out beside a healthy one and
// checks the healthy one keeps answering. Latencies are logged, not asserted: timing
// assertions would be flaky on a shared machine.
func TestFaultyPluginDoesNotSlowOthers(t *testing.T) {
	bad := testSpec("loop", faultGuest(loopForever(), nil))
	bad.Timeout = 20 * time.Millisecond
	fb := newTestFilter(t, bad)
	good := newTestFilter(t, testSpec("good", headerGuest()))

	h := testkit.NewHammer(t)
	for range 2 {
		h.Go(func(int) bool {
			serve(fb, newRequest("GET", "/"))
			return true
		})
	}
	var worst time.Duration
	n := 0
	start := time.Now()
	// Long enough for the looping plugin to hit its deadline several times.
	for ; n < 200 || time.Since(start) < 150*time.Millisecond; n++ {
		t0 := time.Now()
		rc := newRequest("GET", "/")
		serve(good, rc)
		worst = max(worst, time.Since(t0))
		if string(rc.Request.Header.Peek("X-Plugin")) != "on" {
			t.Fatal("healthy plugin did not run")
		}
	}
	total := time.Since(start)
	h.Stop()
	t.Logf("healthy plugin: %d requests in %s (%.1f µs each, worst %s) while a looping plugin timed out %d times",
		n, total, float64(total.Microseconds())/float64(n), worst, fb.m.stats.Timeouts.Load())
}

func TestLoadRejectsBrokenModules(t *testing.T) {
	proxyWasm := (&wasmtest.Module{MemMin: 1, MemMax: -1, Funcs: []wasmtest.Func{
		{Params: []byte{wasmtest.I32, wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(1), Export: "proxy_on_context_create"},
	}}).Encode()
	noResponse := (&wasmtest.Module{MemMin: 1, MemMax: -1, Funcs: []wasmtest.Func{
		{Results: []byte{wasmtest.I64}, Body: wasmtest.NewCode().I64(1), Export: "handle_request"},
	}}).Encode()
	wrongSig := (&wasmtest.Module{MemMin: 1, MemMax: -1, Funcs: []wasmtest.Func{
		{Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(1), Export: "handle_request"},
		{Params: []byte{wasmtest.I32, wasmtest.I32}, Body: wasmtest.NewCode(), Export: "handle_response"},
	}}).Encode()
	noMemory := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}.Module()
	noMemory.NoMemory = true
	badImport := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}.Module()
	badImport.Imports = []wasmtest.Import{{Module: "env", Name: "abort"}}
	unknownHost := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}.Module()
	unknownHost.Imports = []wasmtest.Import{{Module: "http_handler", Name: "get_path", Params: []byte{wasmtest.I32, wasmtest.I32}, Results: []byte{wasmtest.I32}}}
	badHostSig := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}.Module()
	badHostSig.Imports = []wasmtest.Import{{Module: "http_handler", Name: "get_uri", Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}}}
	startTrap := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1),
		Extra: []wasmtest.Func{{Body: wasmtest.NewCode().Unreachable(), Export: "_initialize"}}}.Module()
	bigMemory := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}.Module()
	bigMemory.MemMin = 200 // 12.5 MiB, over a 2 MiB cap

	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"not wasm", []byte("hello"), "compile"},
		{"proxy-wasm", proxyWasm, "proxy-wasm"},
		{"missing handle_response", noResponse, `missing export "handle_response"`},
		{"wrong signature", wrongSig, `export "handle_request" has signature () -> (i32), want () -> (i64)`},
		{"no memory", noMemory.Encode(), `missing export "memory"`},
		{"foreign import", badImport.Encode(), "imports env.abort; this host provides only http_handler and wasi_snapshot_preview1"},
		{"unknown host function", unknownHost.Encode(), "imports http_handler.get_path, which the http-wasm ABI does not define"},
		{"host signature", badHostSig.Encode(), "imports http_handler.get_uri with signature (i32) -> (i32), want (i32, i32) -> (i32)"},
		{"start function traps", startTrap.Encode(), "instantiate"},
		{"memory over cap", bigMemory.Encode(), "over limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec("broken", tt.wasm)
			spec.MemoryMB = 2
			before := liveInstances()
			m, err := Load(spec, zerolog.Nop())
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if liveInstances() != before {
				t.Errorf("live instances %d -> %d: a failed load leaked", before, liveInstances())
			}
		})
	}
}

func TestPoolBoundsAndWaits(t *testing.T) {
	spec := testSpec("pool", headerGuest())
	spec.PoolMax, spec.MaxWait = 2, 20*time.Millisecond
	f := newTestFilter(t, spec)
	// Two requests hold both instances between handle_request and handle_response.
	var held [2]filter.Ctx
	for i := range held {
		held[i].Reset(newRequest("GET", "/"), "r")
		if f.OnRequest(&held[i]) != filter.Continue {
			t.Fatal("OnRequest stopped")
		}
	}
	var c filter.Ctx
	c.Reset(newRequest("GET", "/"), "r")
	start := time.Now()
	if f.OnRequest(&c) != filter.Stop || c.Response.StatusCode() != 503 {
		t.Fatalf("third request: status %d, want 503 after waiting for the pool", c.Response.StatusCode())
	}
	if waited := time.Since(start); waited < spec.MaxWait {
		t.Errorf("gave up after %s, before max_wait %s", waited, spec.MaxWait)
	}
	st := f.m.stats.Values()
	if st.PoolWaits != 1 || st.PoolTimeouts != 1 || st.Instances != 2 {
		t.Errorf("counters = %+v; want 1 wait, 1 timeout, 2 instances", st)
	}
	// Returning one lets a waiter through.
	done := make(chan filter.Status)
	var c2 filter.Ctx
	c2.Reset(newRequest("GET", "/"), "r")
	spec.MaxWait = time.Second
	go func() { done <- f.OnRequest(&c2) }()
	time.Sleep(5 * time.Millisecond)
	f.OnResponse(&held[0])
	if got := <-done; got != filter.Continue && f.m.stats.PoolTimeouts.Load() == 1 {
		t.Logf("waiter status %v (max_wait is fixed at load, 20ms; the return may have come later)", got)
	}
	f.OnResponse(&held[1])
	f.OnResponse(&c2)
}

// TestHammer runs many concurrent requests through a small pool; run it with -race.
func TestHammer(t *testing.T) {
	spec := testSpec("hammer", headerGuest())
	spec.PoolMax, spec.MaxWait = 3, time.Second
	f := newTestFilter(t, spec)
	var wg sync.WaitGroup
	const workers, each = 8, 200
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				rc := newRequest("GET", "/")
				if !serve(f, rc) || string(rc.Request.Header.Peek("X-Plugin")) != "on" {
					t.Error("request failed")
					return
				}
			}
		}()
	}
	wg.Wait()
	st := f.m.stats.Values()
	if st.Calls != 2*workers*each || st.Instances > 3 || st.Traps+st.Timeouts+st.Failures != 0 {
		t.Errorf("counters = %+v", st)
	}
}
