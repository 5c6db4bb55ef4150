package proxy

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// forwardSetup builds a small GET against a loopback fasthttp backend, in a context shaped like
// the one the engine hands to the terminal step.
func forwardSetup(tb testing.TB) (*Upstream, *filter.Ctx) {
	tb.Helper()
	be := serve(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBodyString("hello")
	})
	u := newUpstream(tb, Options{Targets: []string{be}})
	var req fasthttp.Request
	req.SetRequestURI("http://api.example.com/v1/items?limit=10")
	req.Header.SetHost("api.example.com") // the edge always leaves a Host field
	req.Header.Set("Accept", "application/json")
	rc := &fasthttp.RequestCtx{}
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	c := &filter.Ctx{}
	c.Reset(rc, "bench")
	return u, c
}

func runForward(tb testing.TB, u *Upstream, c *filter.Ctx) {
	c.Response.Reset()
	rc := c.RequestCtx
	c.Reset(rc, "bench")
	u.Forward(c)
	if c.Response.StatusCode() != 200 || len(c.Response.Body()) != 5 {
		tb.Fatalf("forward: status %d body %q err %v", c.Response.StatusCode(), c.Response.Body(), c.Err())
	}
}

func TestForwardAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	u, c := forwardSetup(t)
	runForward(t, u, c) // dial and warm the pools
	allocs := testing.AllocsPerRun(200, func() { runForward(t, u, c) })
	if allocs != 0 {
		t.Errorf("Forward allocs = %v, want 0", allocs)
	}
}

func BenchmarkForward(b *testing.B) {
	u, c := forwardSetup(b)
	runForward(b, u, c)
	b.ReportAllocs()
	for b.Loop() {
		runForward(b, u, c)
	}
}
