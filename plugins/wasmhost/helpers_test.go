package wasmhost

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// testSpec returns a spec for wasm with an in-memory compilation cache.
func testSpec(name string, wasm []byte) Spec {
	return Spec{Name: name, Wasm: wasm, CacheDir: "off", PoolMax: 4}
}

// newTestFilter builds spec as a filter on a fresh shared store and closes it with the test.
func newTestFilter(t testing.TB, spec Spec) *Filter {
	t.Helper()
	// Counters are kept per plugin name for the process; a unique name gives each test its own.
	spec.Name = fmt.Sprintf("%s-%d", spec.Name, testSeq.Add(1))
	f, err := NewFilter(filter.Env{Route: "r", Filter: spec.Name, Shared: filter.NewShared(), Log: zerolog.Nop()}, spec)
	if err != nil {
		t.Fatalf("NewFilter: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return f
}

var testSeq atomic.Int64

// newRequest returns a request context for method and uri from 10.1.2.3:4567.
func newRequest(method, uri string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("example.com")
	rc := new(fasthttp.RequestCtx)
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4567}, nil)
	return rc
}

// upstream is a terminal step answering 201 with a header and a body.
func upstream(c *filter.Ctx) {
	c.Response.SetStatusCode(201)
	c.Response.Header.Set("X-Upstream", "yes")
	c.Response.SetBodyString("from upstream")
}

// serve runs f on rc through a one-filter pipeline with the upstream terminal and reports
// whether the terminal ran.
func serve(f filter.Filter, rc *fasthttp.RequestCtx) (reached bool) {
	var c filter.Ctx
	c.Reset(rc, "r")
	filter.NewPipeline([]filter.Filter{f}, []string{"p"}).Run(&c, func(c *filter.Ctx) {
		reached = true
		upstream(c)
	})
	return reached
}

// headerGuest sets request header X-Plugin: on and continues; it is the benchmark's guest.
func headerGuest() []byte {
	g := wasmtest.Guest{
		Imports: []string{"set_header_value"},
		Data:    []wasmtest.Data{{Offset: 0, Bytes: []byte("X-Plugin")}, {Offset: 16, Bytes: []byte("on")}},
	}
	g.HandleRequest = wasmtest.NewCode().
		I32(0).I32(0).I32(8).I32(16).I32(2).Call(g.Fn("set_header_value")).
		I64(1)
	return g.Module().Encode()
}

// liveInstances returns how many guest instances of every plugin exist in this process.
func liveInstances() int64 { return telemetry.Metrics.Sum(metricsGroup, "instances") }

// CounterValues is a point-in-time copy of Counters.
type CounterValues struct {
	Calls, Traps, Timeouts, PoolWaits, PoolTimeouts, Failures int64
	Instances, Created, Discarded, InstantiateErrors          int64
}

// Values copies the counters.
func (c *Counters) Values() CounterValues {
	return CounterValues{
		Calls: c.Calls.Load(), Traps: c.Traps.Load(), Timeouts: c.Timeouts.Load(),
		PoolWaits: c.PoolWaits.Load(), PoolTimeouts: c.PoolTimeouts.Load(), Failures: c.Failures.Load(),
		Instances: c.Instances.Load(), Created: c.Created.Load(), Discarded: c.Discarded.Load(),
		InstantiateErrors: c.InstantiateErrors.Load(),
	}
}
