package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// cacheOrigin is an upstream for the cache tests: every path names its answer, and calls
// counts the requests that reached it.
type cacheOrigin struct {
	calls         atomic.Int32
	revalidations atomic.Int32
	srv           *fasthttp.Server
	addr          string
}

func startCacheOrigin(t *testing.T) *cacheOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &cacheOrigin{addr: ln.Addr().String()}
	o.srv = &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		o.calls.Add(1)
		h := &rc.Response.Header
		switch string(rc.Path()) {
		case "/small":
			h.Set("Cache-Control", "max-age=60")
			rc.SetBodyString("small body")
		case "/sized": // a known length past the proxy's in-memory limit: streamed to the client
			h.Set("Cache-Control", "max-age=60")
			rc.SetBody(bytes.Repeat([]byte("s"), 200<<10))
		case "/chunked", "/huge": // no length: chunked
			n := 96 << 10
			if string(rc.Path()) == "/huge" {
				n = 3 << 20
			}
			h.Set("Cache-Control", "max-age=60")
			rc.SetBodyStreamWriter(func(w *bufio.Writer) {
				chunk := bytes.Repeat([]byte("c"), 8<<10)
				for sent := 0; sent < n; sent += len(chunk) {
					w.Write(chunk) //nolint:errcheck
					w.Flush()      //nolint:errcheck
				}
			})
		case "/json": // compressible, for the cache in front of compress
			h.Set("Cache-Control", "max-age=60")
			h.SetContentType("application/json")
			rc.SetBody(bytes.Repeat([]byte(`{"k":"v"},`), 300))
		case "/swr": // stale at once; a conditional request is answered 304
			if string(rc.Request.Header.Peek("If-None-Match")) == `"e1"` {
				o.revalidations.Add(1)
				h.Set("Cache-Control", "max-age=60")
				h.Set("ETag", `"e1"`)
				rc.SetStatusCode(fasthttp.StatusNotModified)
				return
			}
			h.Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
			h.Set("Age", "5")
			h.Set("ETag", `"e1"`)
			rc.SetBodyString("swr body")
		case "/stale":
			h.Set("Cache-Control", "max-age=1, stale-if-error=60")
			h.Set("Age", "5")
			rc.SetBodyString("stale body")
		}
	}}
	go o.srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = o.srv.Shutdown() })
	return o
}

const cacheConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, idle_timeout: 300ms, retries: { attempts: 0 } }
routes:
  - name: cached
    match: { path_prefix: / }
    upstream: be
    filters:
      - cache: { max_body_bytes: 1MiB, max_bytes: 16MiB }
  - name: other%s
    match: { path: /other-route }
    upstream: be
`

// rawHead sends raw on a fresh connection and returns the response head as received.
func rawHead(t *testing.T, addr, raw string) string {
	t.Helper()
	conn, br := dial(t, addr)
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for !strings.HasSuffix(b.String(), "\r\n\r\n") {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			t.Fatalf("read head: %v (so far %q)", err, b.String())
		}
	}
	return b.String()
}

func cacheGet(t *testing.T, c *fasthttp.Client, url string) (int, []byte, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode(), bytes.Clone(resp.Body()), string(resp.Header.Peek("Cache-Status"))
}

// TestCacheThroughGateway: stored and answered through the real gateway, for bodies read whole
// and bodies streamed (known length and chunked); a chunked body past max_body_bytes reaches
// the client whole and is not stored; entries survive a reload; a stale entry answers while the
// upstream is down (stale-if-error).
func TestCacheThroughGateway(t *testing.T) {
	o := startCacheOrigin(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cacheConfig, o.addr, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	e, addr := start(t, path)
	c := &fasthttp.Client{MaxResponseBodySize: 8 << 20}
	base := "http://" + addr

	for _, tt := range []struct {
		path   string
		size   int
		stored bool
	}{
		{"/small", len("small body"), true},
		{"/sized", 200 << 10, true},
		{"/chunked", 96 << 10, true},
		{"/huge", 3 << 20, false},
	} {
		before := o.calls.Load()
		_, b1, cs1 := cacheGet(t, c, base+tt.path)
		_, b2, cs2 := cacheGet(t, c, base+tt.path)
		if len(b1) != tt.size || len(b2) != tt.size {
			t.Errorf("%s: bodies of %d and %d bytes, want %d (never truncated)", tt.path, len(b1), len(b2), tt.size)
		}
		calls := o.calls.Load() - before
		switch {
		case tt.stored && (calls != 1 || cs2 != "weir; hit"):
			t.Errorf("%s: %d upstream calls, second Cache-Status %q; want 1 call and a hit (first: %q)", tt.path, calls, cs2, cs1)
		case !tt.stored && calls != 2:
			t.Errorf("%s: %d upstream calls, want 2 (not stored)", tt.path, calls)
		}
		if tt.stored && !bytes.Equal(b1, b2) {
			t.Errorf("%s: the cached body differs from the upstream's", tt.path)
		}
	}

	// A hit on the wire: one Date, the stored length, Age and Cache-Status; a HEAD gets the
	// GET entry's length and no body.
	rawHead(t, addr, "GET /small HTTP/1.1\r\nHost: cache.test\r\n\r\n")
	for _, method := range []string{"GET", "HEAD"} {
		head := rawHead(t, addr, method+" /small HTTP/1.1\r\nHost: cache.test\r\n\r\n")
		lower := strings.ToLower(head)
		if n := strings.Count(lower, "\r\ndate:"); n != 1 {
			t.Errorf("%s hit: %d Date fields, want 1:\n%s", method, n, head)
		}
		for _, want := range []string{"\r\ncontent-length: 10\r\n", "\r\nage: ", "\r\ncache-status: weir; hit\r\n", "\r\ncache-control: max-age=60\r\n"} {
			if !strings.Contains(lower, want) {
				t.Errorf("%s hit lacks %q:\n%s", method, want, head)
			}
		}
	}

	// A reload that changes another route keeps the cache.
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cacheConfig, o.addr, "2")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	before := o.calls.Load()
	if _, _, cs := cacheGet(t, c, base+"/small"); cs != "weir; hit" || o.calls.Load() != before {
		t.Errorf("after reload: Cache-Status %q, upstream calls %d; want a hit", cs, o.calls.Load()-before)
	}

	// stale-while-revalidate: the stale entry answers at once while a conditional request
	// through the route's upstream refreshes it in the background.
	if _, _, cs := cacheGet(t, c, base+"/swr"); cs != "weir; fwd=uri-miss; stored" {
		t.Fatalf("/swr: Cache-Status %q, want stored", cs)
	}
	if _, body, cs := cacheGet(t, c, base+"/swr"); cs != "weir; hit; detail=stale-while-revalidate" || string(body) != "swr body" {
		t.Errorf("/swr stale: %q %q, want the stale entry at once", cs, body)
	}
	for i := 0; ; i++ { // wait for the background refresh; the loop only waits, it times nothing
		_, body, cs := cacheGet(t, c, base+"/swr")
		if cs == "weir; hit" {
			if string(body) != "swr body" || o.revalidations.Load() != 1 {
				t.Errorf("/swr refreshed: %q, %d revalidations; want the body kept and 1", body, o.revalidations.Load())
			}
			break
		}
		if i == 500 {
			t.Fatalf("/swr never refreshed (last Cache-Status %q)", cs)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// stale-if-error with the upstream down.
	if _, _, cs := cacheGet(t, c, base+"/stale"); !strings.HasSuffix(cs, "stored") {
		t.Fatalf("/stale: Cache-Status %q, want it stored", cs)
	}
	_ = o.srv.Shutdown()
	status, body, cs := cacheGet(t, c, base+"/stale")
	if status != 200 || string(body) != "stale body" || !strings.Contains(cs, "stale-if-error") {
		t.Errorf("upstream down: %d %q %q, want the stale entry", status, body, cs)
	}
}

const cacheCompressConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, idle_timeout: 300ms }
routes:
  - name: cached
    match: { path_prefix: / }
    upstream: be
    filters:
      - cache: {}
      - compress: { encodings: [br, gzip] }
`

// TestCacheBeforeCompress: with the cache before compress, each coding is stored as its own
// variant (Vary: Accept-Encoding), and the same preference spelled differently shares one.
func TestCacheBeforeCompress(t *testing.T) {
	o := startCacheOrigin(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cacheCompressConfig, o.addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	c := &fasthttp.Client{}
	do := func(ae string) (string, string, int) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/json")
		if ae != "" {
			req.Header.Set("Accept-Encoding", ae)
		}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return string(resp.Header.Peek("Content-Encoding")), string(resp.Header.Peek("Cache-Status")), len(resp.Body())
	}
	for _, tt := range []struct{ ae, coding, status string }{
		{"gzip", "gzip", "weir; fwd=uri-miss; stored"},
		{"GZIP;q=1.0", "gzip", "weir; hit"},
		{"br, gzip", "br", "weir; fwd=vary-miss; stored"},
		{"gzip,br", "br", "weir; hit"},
		{"", "", "weir; fwd=vary-miss; stored"},
		{"", "", "weir; hit"},
	} {
		coding, status, n := do(tt.ae)
		if coding != tt.coding || status != tt.status {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, Cache-Status %q; want %q, %q", tt.ae, coding, status, tt.coding, tt.status)
		}
		if tt.coding == "" && n != 3000 {
			t.Errorf("identity body: %d bytes, want 3000", n)
		}
	}
	if got := o.calls.Load(); got != 3 {
		t.Errorf("upstream requests: %d, want 3 (one per variant)", got)
	}
}
