package wasmhost

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"

	"github.com/weir-gateway/weir/core/testkit"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// TestInstrumentedModulesRun: every test guest shape, and every SDK example built in this tree,
// is rewritten, still compiles, and still loads as a plugin.
func TestInstrumentedModulesRun(t *testing.T) {
	mods := map[string][]byte{
		"hello":  wasmtest.Hello(),
		"header": headerGuest(),
		"loop":   faultGuest(loopForever(), nil),
		"bomb":   faultGuest(memoryBomb(), nil),
		"probe":  probeGuest("a", "b", 1, []step{call("get_uri", offBuf, 10)}, []step{call("get_status_code")}),
	}
	// SDK examples are only rewritten and validated here (the SDK's end-to-end tests load and
	// run them through this runtime); compiling the Go ones natively would take seconds.
	sdk := map[string]bool{}
	built, _ := filepath.Glob("../../sdk/out/*.wasm")
	for _, p := range built {
		if b, err := os.ReadFile(p); err == nil {
			mods[filepath.Base(p)] = b
			sdk[filepath.Base(p)] = true
		}
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for name, wasm := range mods {
		t.Run(name, func(t *testing.T) {
			iw, err := instrument(wasm)
			if err != nil {
				t.Fatalf("instrument: %v", err)
			}
			code, err := rt.CompileModule(ctx, iw)
			if err != nil {
				t.Fatalf("instrumented module does not validate: %v", err)
			}
			code.Close(ctx)
			if sdk[name] {
				return
			}
			m, err := Load(testSpec(name, wasm), zerolog.Nop())
			if err != nil {
				t.Logf("load: %v (may need config)", err)
				return
			}
			defer m.Close()
			if !m.instrumented {
				t.Error("module fell back to wazero's watcher")
			}
		})
	}
}

// TestDeadlineUnderGC: a guest spinning past its deadline is stopped even while the garbage
// collector keeps stopping the world (a guest that never left native code would block that).
func TestDeadlineUnderGC(t *testing.T) {
	spec := testSpec("gc", faultGuest(loopForever(), nil))
	spec.Timeout = 20 * time.Millisecond
	f := newTestFilter(t, spec)
	h := testkit.NewHammer(t)
	h.Go(func(int) bool { runtime.GC(); return true })
	defer h.Stop()
	for range 5 {
		start := time.Now()
		rc := newRequest("GET", "/")
		serve(f, rc)
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("deadline 20ms, answered after %s", took)
		} else {
			t.Logf("answered %d in %s", rc.Response.StatusCode(), took)
		}
	}
	if got := f.m.stats.Timeouts.Load(); got != 5 {
		t.Errorf("timeouts = %d, want 5", got)
	}
}

func TestInstrumentRejects(t *testing.T) {
	noMem := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}.Module()
	noMem.NoMemory = true
	tests := map[string][]byte{
		"not wasm":      []byte("nope"),
		"truncated":     wasmtest.Hello()[:40],
		"no memory":     noMem.Encode(),
		"unknown op":    (&wasmtest.Module{MemMin: 1, MemMax: -1, Funcs: []wasmtest.Func{{Body: wasmtest.NewCode().Raw(0xfb, 0x00), Export: "f"}}}).Encode(),
		"bad section":   append(append([]byte(nil), wasmtest.Hello()...), 0x0a, 0xff),
		"export exists": (&wasmtest.Module{MemMin: 1, MemMax: -1, MemExport: InterruptExport}).Encode(),
	}
	for name, wasm := range tests {
		if _, err := instrument(wasm); err == nil {
			t.Errorf("%s: instrumented without error", name)
		}
	}
}

// FuzzInstrument: the rewriter is a parser of untrusted bytes. It must never panic, and when
// the input compiles, its output must compile too.
func FuzzInstrument(f *testing.F) {
	for _, w := range [][]byte{wasmtest.Hello(), headerGuest(), faultGuest(memoryBomb(), nil)} {
		f.Add(w)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { rt.Close(ctx) })
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := instrument(wasm)
		if err != nil {
			return
		}
		if m, err := rt.CompileModule(ctx, wasm); err == nil {
			m.Close(ctx)
			m2, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("input compiles, instrumented output does not: %v", err)
			}
			m2.Close(ctx)
		}
	})
}
