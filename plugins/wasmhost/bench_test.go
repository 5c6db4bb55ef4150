package wasmhost

import (
	"testing"

	"github.com/weir-gateway/weir/core/filter"
)

// TestHostPathAllocatesNothing: a request through a header-setting plugin, both guest calls
// included, allocates nothing (the instance, its context, timer and stack are reused).
func TestHostPathAllocatesNothing(t *testing.T) {
	f := newTestFilter(t, testSpec("allocs", headerGuest()))
	if !f.m.instrumented {
		t.Skip("module not instrumented: wazero's per-call watcher allocates by design")
	}
	rc := newRequest("GET", "/")
	var c filter.Ctx
	got := testing.AllocsPerRun(200, func() {
		c.Reset(rc, "r")
		if f.OnRequest(&c) != filter.Continue {
			t.Fatal("stopped")
		}
		f.OnResponse(&c)
	})
	if got != 0 {
		t.Errorf("a plugin request allocates %.1f times, want 0", got)
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
