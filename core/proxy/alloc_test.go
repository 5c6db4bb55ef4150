package proxy

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// sanitizeCtx returns a request context holding typicalRequest from a peer, plus a pristine copy
// of its header to restore before each run.
func sanitizeCtx(tb testing.TB, raw string) (*fasthttp.RequestCtx, *fasthttp.RequestHeader) {
	tb.Helper()
	var req fasthttp.Request
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 40000}, nil)
	tmpl := &fasthttp.RequestHeader{}
	ctx.Request.Header.CopyTo(tmpl)
	return &ctx, tmpl
}

const forwardedRequest = "GET /x HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n" +
	"X-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: https\r\n\r\n"

func TestSanitizeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	trusted, err := ParseTrusted([]string{"192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		raw     string
		trusted *Trusted
	}{
		{"typical untrusted", typicalRequest, nil},
		{"forwarded untrusted", forwardedRequest, nil},
		{"forwarded trusted", forwardedRequest, trusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, tmpl := sanitizeCtx(t, tc.raw)
			allocs := testing.AllocsPerRun(100, func() {
				tmpl.CopyTo(&ctx.Request.Header)
				Sanitize(ctx, tc.trusted)
			})
			if allocs != 0 {
				t.Errorf("Sanitize allocs = %v, want 0", allocs)
			}
			if tc.trusted != nil {
				if got, want := string(ctx.Request.Header.Peek(hXFF)), "203.0.113.1, 192.0.2.10"; got != want {
					t.Errorf("X-Forwarded-For = %q, want %q", got, want)
				}
			}
		})
	}
}

func BenchmarkSanitize(b *testing.B) {
	ctx, tmpl := sanitizeCtx(b, typicalRequest)
	b.ReportAllocs()
	for b.Loop() {
		tmpl.CopyTo(&ctx.Request.Header)
		Sanitize(ctx, nil)
	}
}

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
