package proxy

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/weir-gateway/weir/core/filter"
)

// TestUpstreamWritesOnlyPipelineState: whatever the filters or a plugin left in the URI, the
// upstream gets the Host field the pipeline last saw, no Authorization made from userinfo,
// and an origin-form target of path and query only.
func TestUpstreamWritesOnlyPipelineState(t *testing.T) {
	var mu sync.Mutex
	var got []*fasthttp.Request
	be := newRawBackend(t, func(req *fasthttp.Request, w io.Writer) {
		r := new(fasthttp.Request)
		req.CopyTo(r)
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		replyOK(nil, w)
	})
	u := newUpstream(t, Options{Targets: []string{be.addr()}})
	tests := []struct {
		name, setURI, wantTarget string
	}{
		{"scheme-relative target", "//evil.example/pwn", "//evil.example/pwn"},
		{"absolute target", "http://evil.example/pwn?x=1", "/pwn?x=1"},
		{"absolute target with userinfo", "http://admin:admin@evil.example/pwn", "/pwn"},
		{"path with dot segments", "/a/../b", "/a/../b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			var rc fasthttp.RequestCtx
			rc.Init(new(fasthttp.Request), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			rc.Request.SetRequestURI("/start")
			rc.Request.Header.SetHost("app.test")
			_ = rc.Path() // the URI was parsed, as the pipeline does
			rc.Request.SetRequestURI(tc.setURI)
			_ = rc.Host() // and parsed again after the plugin's change
			var c filter.Ctx
			c.Reset(&rc, "t")
			u.Forward(&c)
			if sc := c.Response.StatusCode(); sc != 200 {
				t.Fatalf("status %d err %v", sc, c.Err())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("backend got %d requests, want 1", len(got))
			}
			r := got[0]
			if h := string(r.Header.Host()); h != "app.test" {
				t.Errorf("Host %q, want app.test", h)
			}
			if a := r.Header.Peek("Authorization"); len(a) != 0 {
				t.Errorf("Authorization %q, want none", a)
			}
			if target := string(r.Header.RequestURI()); target != tc.wantTarget {
				t.Errorf("target %q, want %q", target, tc.wantTarget)
			}
		})
	}

	t.Run("host removed", func(t *testing.T) {
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI("//evil.example/pwn")
		var c filter.Ctx
		c.Reset(&rc, "t")
		u.Forward(&c)
		if sc := c.Response.StatusCode(); sc != 502 {
			t.Errorf("status %d, want 502: no host is made up from the target", sc)
		}
	})
}
