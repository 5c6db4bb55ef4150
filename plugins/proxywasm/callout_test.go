package proxywasm

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

//go:embed testdata/callout.wasm
var calloutWasm []byte

// upstreams is a snapshot's upstreams as a test fakes them.
type upstreams map[string]filter.Caller

func (u upstreams) Upstream(name string) (filter.Caller, bool) { c, ok := u[name]; return c, ok }

type callerFunc func(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, maxBody int) error

func (f callerFunc) Call(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, maxBody int) error {
	return f(req, resp, timeout, maxBody)
}

// calloutFilter loads testdata/callout.wasm with ups as its snapshot's upstreams, on one
// instance.
func calloutFilter(t *testing.T, ups filter.Upstreams) filter.Filter {
	t.Helper()
	env := filter.Env{Route: "r", Filter: "callout", Shared: filter.NewShared(), Log: zerolog.Nop(), Upstreams: ups}
	f, err := filter.LoadPlugin(env, filter.PluginSpec{
		Name: "callout", Wasm: calloutWasm, Config: []byte("{}"), CacheDir: "off", PoolMin: 1, PoolMax: 1,
	})
	if err != nil {
		t.Fatalf("LoadPlugin: %v", err)
	}
	t.Cleanup(func() { _ = f.(*Filter).Close() })
	return f
}

// TestHTTPCalloutDecides: the guest pauses each request, calls upstream "auth", and lets the
// request through, answers it itself, or fails it from what the callout answered.
func TestHTTPCalloutDecides(t *testing.T) {
	answer := func(status int, user, body string) filter.Caller {
		return callerFunc(func(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, maxBody int) error {
			if got := string(req.Header.Method()) + " " + string(req.RequestURI()) + " " + string(req.Header.Host()); got != "GET /check auth.local" {
				return errors.New("unexpected callout " + got)
			}
			if timeout != 2*time.Second || maxBody <= 0 {
				return errors.New("unexpected timeout or body limit")
			}
			resp.SetStatusCode(status)
			if user != "" {
				resp.Header.Set("X-User", user) // any case: names are matched in any case
			}
			resp.SetBodyString(body)
			return nil
		})
	}
	tests := []struct {
		name       string
		ups        filter.Upstreams
		wantStatus int
		wantBody   string
		wantUser   string // x-auth-user the upstream saw; "" when not reached
	}{
		{"allowed", upstreams{"auth": answer(200, "alice", "")}, 200, "upstream body", "alice"},
		{"allowed without a user", upstreams{"auth": answer(204, "", "")}, 200, "upstream body", ""},
		{"denied", upstreams{"auth": answer(401, "", "not you")}, 403, "not you", ""},
		{"callout failed", upstreams{"auth": callerFunc(func(*fasthttp.Request, *fasthttp.Response, time.Duration, int) error {
			return errors.New("connection refused")
		})}, 503, "callout failed", ""},
		{"upstream not in the config", upstreams{"other": answer(200, "alice", "")}, 500, "call refused", ""},
		{"no upstreams", nil, 500, "call refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := calloutFilter(t, tt.ups)
			for i := 0; i < 2; i++ {
				resp, saw := serve(f, nil)
				if resp.StatusCode() != tt.wantStatus || string(resp.Body()) != tt.wantBody {
					t.Fatalf("got %d %q, want %d %q", resp.StatusCode(), resp.Body(), tt.wantStatus, tt.wantBody)
				}
				if saw.called != (tt.wantStatus == 200) {
					t.Errorf("upstream called = %v, want %v", saw.called, tt.wantStatus == 200)
				}
				if got := saw.headers["X-Auth-User"]; got != tt.wantUser {
					t.Errorf("upstream saw X-Auth-User %q, want %q", got, tt.wantUser)
				}
			}
		})
	}
}

// TestHTTPCalloutHoldsNoLock: while one request's callout is outstanding, another request runs
// through the same (only) instance, callout and all; then the first one completes.
func TestHTTPCalloutHoldsNoLock(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	first := true
	f := calloutFilter(t, upstreams{"auth": callerFunc(func(_ *fasthttp.Request, resp *fasthttp.Response, _ time.Duration, _ int) error {
		if first { // the instance serializes callbacks, and the callout starts in one
			first = false
			close(started)
			<-release
		}
		resp.SetStatusCode(200)
		resp.Header.Set("x-user", "u")
		return nil
	})})
	done := make(chan int)
	go func() {
		resp, _ := serve(f, nil)
		done <- resp.StatusCode()
	}()
	<-started
	second := make(chan int)
	go func() {
		resp, _ := serve(f, nil)
		second <- resp.StatusCode()
	}()
	select {
	case st := <-second:
		if st != 200 {
			t.Errorf("second request: status %d, want 200", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second request blocked behind the first one's callout")
	}
	select {
	case <-done:
		t.Fatal("first request finished before its callout answered")
	default:
	}
	close(release)
	if st := <-done; st != 200 {
		t.Errorf("first request: status %d, want 200", st)
	}
}

// serialize encodes header pairs as the ABI does.
func serialize(kv ...string) string {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(len(kv)/2))
	for _, s := range kv {
		binary.Write(&b, binary.LittleEndian, uint32(len(s)))
	}
	for _, s := range kv {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

// TestHTTPCallEdgeCases: proxy_http_call's statuses for bad pointers, upstreams outside the
// config and incomplete or invalid headers, and the callout response's maps outside
// proxy_on_http_call_response.
func TestHTTPCallEdgeCases(t *testing.T) {
	e := newHostEnv(t)
	calls := make(chan string, 16)
	e.h.f.upstreams = upstreams{"auth": callerFunc(func(req *fasthttp.Request, _ *fasthttp.Response, _ time.Duration, _ int) error {
		calls <- string(req.Header.Method()) + " " + string(req.RequestURI()) + " " + string(req.Header.Host()) + " " + string(req.Body())
		return errors.New("no answer in this test")
	})}
	const bad = 1 << 30
	name, nameN := e.put(3000, "auth")
	other, otherN := e.put(3010, "nope")
	good := serialize(":method", "POST", ":path", "/c?x=1", ":authority", "auth.local", "content-length", "99", "x-a", "b")
	hdr, hdrN := e.put(3100, good)
	noAuthority, noAuthorityN := e.put(3400, serialize(":method", "GET", ":path", "/c"))
	badPath, badPathN := e.put(3500, serialize(":method", "GET", ":path", "c", ":authority", "a"))
	unknownPseudo, unknownPseudoN := e.put(3600, serialize(":method", "GET", ":path", "/c", ":authority", "a", ":x", "y"))
	junk, junkN := e.put(3700, "\x05\x00\x00\x00")
	body, bodyN := e.put(3800, "payload")
	const retID = 3900
	args := func(n, nn, h, hn, b, bn, id uint64) []uint64 { return []uint64{n, nn, h, hn, b, bn, 0, 0, 1000, id} }
	tests := []struct {
		name string
		h    *httpCtx
		args []uint64
		want uint64
	}{
		{"bad upstream pointer", e.h, args(bad, nameN, hdr, hdrN, 0, 0, retID), statusInvalidMemoryAccess},
		{"bad headers pointer", e.h, args(name, nameN, bad, hdrN, 0, 0, retID), statusInvalidMemoryAccess},
		{"bad body pointer", e.h, args(name, nameN, hdr, hdrN, bad, 4, retID), statusInvalidMemoryAccess},
		{"bad token pointer", e.h, args(name, nameN, hdr, hdrN, 0, 0, bad), statusInvalidMemoryAccess},
		{"upstream not in the config", e.h, args(other, otherN, hdr, hdrN, 0, 0, retID), statusBadArgument},
		{"no :authority", e.h, args(name, nameN, noAuthority, noAuthorityN, 0, 0, retID), statusBadArgument},
		{"relative :path", e.h, args(name, nameN, badPath, badPathN, 0, 0, retID), statusBadArgument},
		{"unknown pseudo-header", e.h, args(name, nameN, unknownPseudo, unknownPseudoN, 0, 0, retID), statusBadArgument},
		{"malformed map", e.h, args(name, nameN, junk, junkN, 0, 0, retID), statusBadArgument},
		{"from an http context", e.h, args(name, nameN, hdr, hdrN, body, bodyN, retID), statusOK},
		{"from the root context", nil, args(name, nameN, hdr, hdrN, body, bodyN, retID), statusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.callIn(tt.h, proxyHTTPCall, tt.args...); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	for i := 0; i < 2; i++ {
		select {
		case got := <-calls:
			if want := "POST /c?x=1 auth.local payload"; got != want {
				t.Errorf("callout sent %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("callout not sent")
		}
	}
	if id, _ := e.mod.Memory().ReadUint32Le(retID); id == 0 {
		t.Error("no callout token returned")
	}
	k, kn := e.put(4000, ":status")
	if got := e.callIn(e.h, proxyGetHeaderMapValue, mapHTTPCallResponseHeaders, k, kn, 4100, 4104); got != statusNotFound {
		t.Errorf("callout response header outside its callback: status %d, want NotFound", got)
	}
	if got := e.callIn(e.h, proxyReplaceHeaderMapValue, mapHTTPCallResponseHeaders, k, kn, k, kn); got != statusBadArgument {
		t.Errorf("write to a callout response's headers: status %d, want BadArgument", got)
	}
}
