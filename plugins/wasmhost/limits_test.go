package wasmhost

import (
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/httpwasm"
)

// runWith runs f on rc through a one-filter pipeline ending in terminal and reports whether the
// terminal ran.
func runWith(f filter.Filter, rc *fasthttp.RequestCtx, terminal func(*filter.Ctx)) (reached bool) {
	var c filter.Ctx
	c.Reset(rc, "r")
	filter.NewPipeline([]filter.Filter{f}, []string{"p"}).Run(&c, func(c *filter.Ctx) {
		reached = true
		terminal(c)
	})
	return reached
}

// countingReader is a body stream of n bytes that records how many the host pulled from it.
type countingReader struct {
	left, read int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.left -= n
	r.read += n
	return n, nil
}

// TestGuestHeaderRules: a guest's header obeys the rules of a client's header at the edge. A
// control byte other than HTAB (VT, SOH, DEL, ESC, ...) or a header that frames the message or
// manages the connection traps, and nothing reaches the upstream.
func TestGuestHeaderRules(t *testing.T) {
	tests := []struct {
		name, value string
		wantTrap    bool
	}{
		{"X-Ok", "plain value", false},
		{"X-Tab", "a\tb", false},
		{"X-Obs", "caf\xc3\xa9", false},
		{"X-Proxy-Id", "1", false},
		{"Proxy", "1", false},
		{"X-VT", "a\x0bb", true},
		{"X-SOH", "\x01", true},
		{"X-DEL", "a\x7f", true},
		{"X-ESC", "\x1b[31m", true},
		{"X-NUL", "a\x00", true},
		{"X-CR", "a\rb", true},
		{"X-LF", "a\nb", true},
		{"Connection", "X-Forwarded-For", true},
		{"connection", "close", true},
		{"Keep-Alive", "timeout=5", true},
		{"Transfer-Encoding", "chunked", true},
		{"TE", "trailers", true},
		{"Trailer", "X-T", true},
		{"Upgrade", "websocket", true},
		{"Proxy-Authorization", "Basic eA==", true},
		{"proxy-connection", "keep-alive", true},
		{"Content-Length", "0", true},
	}
	for _, tt := range tests {
		for _, fn := range []string{"set_header_value", "add_header_value"} {
			for _, kind := range []int32{kReq, kResp} {
				t.Run(fn+"/"+map[int32]string{kReq: "request", kResp: "response"}[kind]+"/"+tt.name, func(t *testing.T) {
					// next=0 for the response kind, so the guest's response is the answer.
					next := int64(1)
					if kind == kResp {
						next = 0
					}
					req := []step{call(fn, kind, offA, int32(len(tt.name)), offB, int32(len(tt.value)))}
					f := newTestFilter(t, testSpec("hdr", probeGuest(tt.name, tt.value, next, req, nil)))
					rc := newRequest("GET", "/")
					rc.Request.Header.Set("X-Forwarded-For", "10.1.2.3")
					var sent string
					reached := runWith(f, rc, func(c *filter.Ctx) { sent = c.Request.Header.String() })
					gotTrap := f.m.stats.Traps.Load() == 1
					if gotTrap != tt.wantTrap {
						t.Fatalf("trapped = %v, want %v", gotTrap, tt.wantTrap)
					}
					if !tt.wantTrap {
						h := &rc.Request.Header
						got := string(h.Peek(tt.name))
						if kind == kResp {
							got = string(rc.Response.Header.Peek(tt.name))
						}
						if got != tt.value {
							t.Errorf("%s = %q, want %q", tt.name, got, tt.value)
						}
						return
					}
					if reached {
						t.Errorf("the upstream was reached with %q", sent)
					}
					if got := rc.Response.StatusCode(); got != 500 {
						t.Errorf("status = %d, want 500 (fail closed)", got)
					}
					if got := string(rc.Request.Header.Peek("X-Forwarded-For")); got != "10.1.2.3" {
						t.Errorf("X-Forwarded-For = %q after the refused write", got)
					}
				})
			}
		}
	}
}

// TestGuestRemovesOwnedHeader: removing a header the gateway owns does nothing, so a guest
// written for another host that drops Content-Length after a body change stays correct, and a
// guest cannot unframe the request or undo a decision to close the connection.
func TestGuestRemovesOwnedHeader(t *testing.T) {
	req := []step{
		call("remove_header", kReq, offA, 14), // Content-Length
		call("remove_header", kReq, offB, 6),  // X-Drop
	}
	f := newTestFilter(t, testSpec("rm", probeGuest("Content-Length", "X-Drop", 1, req, nil)))
	rc := newRequest("POST", "/")
	rc.Request.Header.Set("X-Drop", "1")
	rc.Request.SetBodyString("hello")
	rc.Request.Header.SetContentLength(5)
	var cl int
	var body string
	reached := runWith(f, rc, func(c *filter.Ctx) { cl, body = c.Request.Header.ContentLength(), string(c.Request.Body()) })
	if !reached || f.m.stats.Traps.Load() != 0 {
		t.Fatalf("reached = %v, traps = %d", reached, f.m.stats.Traps.Load())
	}
	if cl != 5 || body != "hello" {
		t.Errorf("upstream request: Content-Length %d, body %q; want 5, hello", cl, body)
	}
	if rc.Request.Header.Peek("X-Drop") != nil {
		t.Error("X-Drop was not removed")
	}
}

// TestGuestHeaderBudget: the header bytes a guest writes in one request (name + value + 4 per
// write, every kind) are capped at MaxHeaderBytes; the write that would pass the cap traps
// rather than being cut, and the budget starts again with each request.
func TestGuestHeaderBudget(t *testing.T) {
	const value = "0123456789" // each write costs 3 + 10 + 4 = 17 bytes
	w := call("add_header_value", kReq, offA, 3, offB, int32(len(value)))
	wr := call("add_header_value", kResp, offA, 3, offB, int32(len(value)))
	tests := []struct {
		name      string
		req, resp []step
		wantTrap  bool
	}{
		{"three writes fit 64", []step{w, w, w}, nil, false},
		{"the fourth passes 64", []step{w, w, w, w}, nil, true},
		{"both phases share one budget", []step{call("enable_features", int32(httpwasm.FeatureBufferResponse)), w, w}, []step{wr, wr}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec("budget", probeGuest("X-A", value, 1, tt.req, tt.resp))
			spec.MaxHeaderBytes = 64
			f := newTestFilter(t, spec)
			for i := range 3 { // the budget is per request
				rc := newRequest("GET", "/")
				serve(f, rc)
				if got := f.m.stats.Traps.Load() > 0; got != tt.wantTrap {
					t.Fatalf("request %d: trapped = %v, want %v", i, got, tt.wantTrap)
				}
				if tt.wantTrap {
					if got := rc.Response.StatusCode(); got != 500 {
						t.Errorf("status = %d, want 500", got)
					}
					return
				}
				if got := len(rc.Request.Header.PeekAll("X-A")); got != 3 {
					t.Errorf("request %d: %d X-A values, want 3", i, got)
				}
			}
		})
	}
}

// TestGuestFinalStatusOnly: set_status_code takes final statuses (200..599), as the respond
// filter does; a 1xx answer would leave the client waiting and desync the connection.
func TestGuestFinalStatusOnly(t *testing.T) {
	tests := []struct {
		code     int32
		wantTrap bool
	}{
		{200, false}, {204, false}, {599, false},
		{100, true}, {101, true}, {199, true}, {600, true}, {-1, true}, {0, true},
	}
	for _, tt := range tests {
		f := newTestFilter(t, testSpec("status", probeGuest("", "", 0, []step{call("set_status_code", tt.code)}, nil)))
		rc := newRequest("GET", "/")
		serve(f, rc)
		got, want := rc.Response.StatusCode(), int(tt.code)
		if tt.wantTrap {
			want = 500
		}
		if gotTrap := f.m.stats.Traps.Load() == 1; gotTrap != tt.wantTrap || got != want {
			t.Errorf("set_status_code(%d): trapped %v, status %d; want %v, %d", tt.code, gotTrap, got, tt.wantTrap, want)
		}
	}
}

// TestSetURIPathOnly: set_uri changes the path and query only. A target that other HTTP stacks
// read as carrying an authority ("//host/...") or a scheme traps; the Host the upstream gets is
// never the guest's.
func TestSetURIPathOnly(t *testing.T) {
	tests := []struct {
		uri      string
		wantTrap bool
	}{
		{"/a//b?next=//evil.example/", false},
		{"/", false},
		{"//evil.example/pwn", true},
		{"///evil.example/pwn", true},
		{"//", true},
		{"http://evil.example/y", true},
		{"evil.example/y", true},
	}
	for _, tt := range tests {
		f := newTestFilter(t, testSpec("uri", probeGuest(tt.uri, "", 1, []step{call("set_uri", offA, int32(len(tt.uri)))}, nil)))
		rc := newRequest("GET", "/orig")
		var host, uri string
		reached := runWith(f, rc, func(c *filter.Ctx) {
			c.Request.URI().DisablePathNormalizing = true // as the proxy sends it
			host, uri = string(c.Request.Host()), string(c.Request.URI().RequestURI())
		})
		if gotTrap := f.m.stats.Traps.Load() == 1; gotTrap != tt.wantTrap {
			t.Errorf("set_uri(%q): trapped = %v, want %v", tt.uri, gotTrap, tt.wantTrap)
			continue
		}
		if tt.wantTrap {
			if reached {
				t.Errorf("set_uri(%q): the upstream was reached (Host %q, target %q)", tt.uri, host, uri)
			}
			continue
		}
		if host != "example.com" || uri != tt.uri {
			t.Errorf("set_uri(%q): upstream got Host %q, target %q; want example.com, %q", tt.uri, host, uri, tt.uri)
		}
	}
}

// TestRequestBodyLimit: read_body of a request body over max_body_bytes answers 413 whatever
// the fail policy and closes the connection; the host pulls at most one byte past the limit
// from a streamed body, and none when Content-Length already says it is too large.
func TestRequestBodyLimit(t *testing.T) {
	const limit = 1000
	tests := []struct {
		name       string
		size       int
		stream     bool
		knownLen   bool
		failOpen   bool
		wantStatus int
		wantRead   int // bytes pulled from the stream
	}{
		{"streamed at the limit", limit, true, false, false, 0, limit},
		{"streamed chunked over", 5 * limit, true, false, false, 413, limit + 1},
		{"streamed chunked over, fail open", 5 * limit, true, false, true, 413, limit + 1},
		{"streamed with content-length over", 5 * limit, true, true, false, 413, 0},
		{"in memory over", limit + 1, false, false, false, 413, 0},
		{"in memory under", limit - 1, false, false, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := []step{callTo(offResult, "read_body", httpwasm.BodyRequest, offBuf, 64)}
			spec := testSpec("rbody", probeGuest("", "", 1, req, nil))
			spec.MaxBodyBytes, spec.FailOpen = limit, tt.failOpen
			f := newTestFilter(t, spec)
			rc := newRequest("POST", "/")
			src := &countingReader{left: tt.size}
			switch {
			case !tt.stream:
				rc.Request.SetBodyString(strings.Repeat("x", tt.size))
			case tt.knownLen:
				rc.Request.SetBodyStream(src, tt.size)
			default:
				rc.Request.SetBodyStream(src, -1)
			}
			var sent int
			reached := runWith(f, rc, func(c *filter.Ctx) { sent = len(c.Request.Body()) })
			if src.read != tt.wantRead {
				t.Errorf("host read %d bytes of the stream, want %d", src.read, tt.wantRead)
			}
			if tt.wantStatus == 0 {
				if !reached || sent != tt.size {
					t.Errorf("reached = %v, upstream body %d bytes; want true, %d", reached, sent, tt.size)
				}
				return
			}
			if reached {
				t.Error("the upstream was reached")
			}
			if got := rc.Response.StatusCode(); got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if !rc.Response.ConnectionClose() {
				t.Error("413 after a partial read must close the connection")
			}
		})
	}
}

// TestResponseBodyLimit: with buffer_response, reading a response body over max_body_bytes
// answers 502 with the gateway's own error (none of the upstream's headers), pulling at most
// one byte past the limit. buffer_response alone reads nothing.
func TestResponseBodyLimit(t *testing.T) {
	const limit = 1000
	buffer := call("enable_features", int32(httpwasm.FeatureBufferResponse))
	read := callTo(offResult, "read_body", httpwasm.BodyResponse, offBuf, 64)
	tests := []struct {
		name       string
		size       int
		resp       []step
		failOpen   bool
		wantStatus int
		wantRead   int
	}{
		{"under the limit", limit, []step{read}, false, 200, limit},
		{"over the limit", 300 * limit, []step{read}, false, 502, limit + 1},
		{"over the limit, fail open", 300 * limit, []step{read}, true, 502, limit + 1},
		{"buffer_response without a read", 300 * limit, nil, false, 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec("respbody", probeGuest("", "", 1, []step{buffer}, tt.resp))
			spec.MaxBodyBytes, spec.FailOpen = limit, tt.failOpen
			f := newTestFilter(t, spec)
			rc := newRequest("GET", "/")
			src := &countingReader{left: tt.size}
			runWith(f, rc, func(c *filter.Ctx) {
				c.Response.Header.Set("X-Upstream", "yes")
				c.Response.Header.Set("Content-Encoding", "gzip")
				c.Response.SetBodyStream(src, -1)
			})
			if src.read != tt.wantRead {
				t.Errorf("host read %d bytes of the stream, want %d", src.read, tt.wantRead)
			}
			if got := rc.Response.StatusCode(); got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if tt.wantStatus == 502 {
				for _, h := range []string{"X-Upstream", "Content-Encoding"} {
					if v := rc.Response.Header.Peek(h); len(v) > 0 {
						t.Errorf("the gateway's 502 carries the upstream's %s: %q", h, v)
					}
				}
			}
		})
	}
}

// TestWriteBodyLimit: write_body is capped at max_body_bytes per request; the write that
// passes it traps.
func TestWriteBodyLimit(t *testing.T) {
	w := call("write_body", httpwasm.BodyResponse, offA, 5)
	for _, tt := range []struct {
		writes   []step
		wantTrap bool
	}{
		{[]step{w, w}, false},
		{[]step{w, w, w}, true},
	} {
		spec := testSpec("wbody", probeGuest("hello", "", 0, tt.writes, nil))
		spec.MaxBodyBytes = 12
		f := newTestFilter(t, spec)
		rc := newRequest("GET", "/")
		serve(f, rc)
		if got := f.m.stats.Traps.Load() == 1; got != tt.wantTrap {
			t.Errorf("%d writes of 5 with a limit of 12: trapped = %v, want %v", len(tt.writes), got, tt.wantTrap)
		}
	}
}
