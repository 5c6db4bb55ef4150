package runtime

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/runtime/wasmtest"
)

// bareCallAllocs measures what one wazero call with WithCloseOnContextDone costs in
// allocations by itself (wazero starts a watcher per call), so host-path tests can subtract it.
func bareCallAllocs(t testing.TB) float64 {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	defer rt.Close(ctx)
	g := wasmtest.Guest{HandleRequest: wasmtest.NewCode().I64(1)}
	mod, err := rt.Instantiate(ctx, g.Module().Encode())
	if err != nil {
		t.Fatal(err)
	}
	fn := mod.ExportedFunction("handle_request")
	var in instance
	in.ctx = callCtx{done: make(chan struct{})}
	stack := make([]uint64, 2)
	return testing.AllocsPerRun(200, func() {
		if err := fn.CallWithStack(&in.ctx, stack); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHostPathAllocatesNothing: a request through a header-setting plugin allocates no more
// than its two guest calls do inside wazero.
func TestHostPathAllocatesNothing(t *testing.T) {
	perCall := bareCallAllocs(t)
	f := newTestFilter(t, testSpec("allocs", headerGuest()))
	rc := newRequest("GET", "/")
	var c filter.Ctx
	got := testing.AllocsPerRun(200, func() {
		c.Reset(rc, "r")
		if f.OnRequest(&c) != filter.Continue {
			t.Fatal("stopped")
		}
		f.OnResponse(&c)
	})
	t.Logf("allocations per request: %.1f (wazero itself: %.1f per call)", got, perCall)
	if got > 2*perCall {
		t.Errorf("a plugin request allocates %.1f times; the two guest calls account for %.1f", got, 2*perCall)
	}
}

func benchFilters(b *testing.B, filters ...filter.Filter) {
	p := filter.NewPipeline(filters, make([]string, len(filters)))
	rc := newRequest("GET", "/bench")
	var c filter.Ctx
	terminal := func(*filter.Ctx) {}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.Reset(rc, "r")
		p.Run(&c, terminal)
	}
}

// BenchmarkPluginNone is the baseline: the same pipeline with no filter.
func BenchmarkPluginNone(b *testing.B) { benchFilters(b) }

// BenchmarkPluginHeader adds a WAT-class guest that sets one request header; the difference
// from BenchmarkPluginNone is the added cost per request (both guest calls).
func BenchmarkPluginHeader(b *testing.B) {
	benchFilters(b, newTestFilter(b, testSpec("bench", headerGuest())))
}

// BenchmarkPluginHeaderParallel runs the header plugin from every CPU through one pool.
func BenchmarkPluginHeaderParallel(b *testing.B) {
	f := newTestFilter(b, testSpec("benchp", headerGuest()))
	p := filter.NewPipeline([]filter.Filter{f}, []string{"p"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rc := newRequest("GET", "/bench")
		var c filter.Ctx
		for pb.Next() {
			c.Reset(rc, "r")
			p.Run(&c, func(*filter.Ctx) {})
		}
	})
}
