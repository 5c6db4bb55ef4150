package extauth

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

// authService is a loopback auth service whose answers a test chooses; it records what it saw.
type authService struct {
	url    string
	calls  atomic.Int32
	mu     sync.Mutex
	seen   []string // each call's request, as "Name: value" lines after the request line
	bodies []string
	answer func(rc *fasthttp.RequestCtx)
}

func startAuth(t testing.TB, answer func(rc *fasthttp.RequestCtx)) *authService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &authService{url: "http://" + ln.Addr().String() + "/check", answer: answer}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		a.calls.Add(1)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s\n", rc.Method(), rc.RequestURI())
		for k, v := range rc.Request.Header.All() {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
		a.mu.Lock()
		a.seen = append(a.seen, b.String())
		a.bodies = append(a.bodies, string(rc.PostBody()))
		a.mu.Unlock()
		a.answer(rc)
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return a
}

func (a *authService) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return ""
	}
	return a.seen[len(a.seen)-1]
}

func allow(rc *fasthttp.RequestCtx) {
	rc.Response.Header.Set("X-User-Id", "u-42")
	rc.Response.Header.Set("X-Not-Listed", "leak")
	rc.SetStatusCode(200)
}

func build(tb testing.TB, yamlCfg string) (*Filter, error) {
	tb.Helper()
	f, err := filtertest.NewFilter(tb, New, Name, yamlCfg)
	if err != nil {
		return nil, err
	}
	ff := f.(*Filter)
	tb.Cleanup(func() { ff.Close() })
	return ff, nil
}

func mustBuild(tb testing.TB, yamlCfg string) *Filter {
	tb.Helper()
	f, err := build(tb, yamlCfg)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// run plays raw through the filter and returns the context and what the upstream received
// ("" when nothing reached it).
func run(t testing.TB, f filter.Filter, raw string) (*filter.Ctx, string) {
	t.Helper()
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	c := filtertest.NewCtx(t, raw)
	got := ""
	p.Run(c, func(c *filter.Ctx) {
		got = c.Request.Header.String()
		if got == "" {
			got = "(empty)"
		}
		c.SetStatusCode(200)
	})
	return c, got
}

func TestAllowForwardsChosenHeaders(t *testing.T) {
	a := startAuth(t, allow)
	f := mustBuild(t, fmt.Sprintf(`{url: %q, forward_headers: [Authorization, Cookie, X-Forwarded-For], upstream_headers: [X-User-Id]}`, a.url))
	c, up := run(t, f, "GET /orders/7?full=1 HTTP/1.1\nHost: api.example\nAuthorization: Bearer abc\n"+
		"Cookie: s=1\nX-Forwarded-For: 192.0.2.1\nX-Other: no\nX-User-Id: admin\nx-user-id: root\n")
	if up == "" {
		t.Fatalf("upstream not reached; status %d", c.Response.StatusCode())
	}
	seen := a.last()
	for _, want := range []string{"GET /check\n", "Authorization: Bearer abc\n", "Cookie: s=1\n", "X-Forwarded-For: 192.0.2.1\n",
		"X-Forwarded-Method: GET\n", "X-Forwarded-Uri: /orders/7?full=1\n", "X-Forwarded-Host: api.example\n", "X-Forwarded-Proto: http\n"} {
		if !strings.Contains(seen, want) {
			t.Errorf("auth service did not see %q; saw:\n%s", want, seen)
		}
	}
	for _, not := range []string{"X-Other", "X-User-Id"} {
		if strings.Contains(seen, not) {
			t.Errorf("auth service saw %s:\n%s", not, seen)
		}
	}
	if n := strings.Count(up, "X-User-Id:"); n != 1 || !strings.Contains(up, "X-User-Id: u-42\r\n") {
		t.Errorf("upstream X-User-Id: want exactly the service's u-42, got:\n%s", up)
	}
	if strings.Contains(strings.ToLower(up), "admin") || strings.Contains(up, "root") || strings.Contains(up, "X-Not-Listed") {
		t.Errorf("upstream got a client-injected or unlisted header:\n%s", up)
	}
}

func TestDenyReturnsServiceAnswer(t *testing.T) {
	a := startAuth(t, func(rc *fasthttp.RequestCtx) {
		rc.SetStatusCode(401)
		rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="api"`)
		rc.Response.Header.Set("X-Internal", "secret")
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"error":"bad token"}`)
	})
	f := mustBuild(t, fmt.Sprintf(`{url: %q}`, a.url))
	c, up := run(t, f, "GET / HTTP/1.1\nHost: h\nAuthorization: Bearer nope\n")
	if up != "" {
		t.Fatalf("a denied request reached the upstream:\n%s", up)
	}
	if got := c.Response.StatusCode(); got != 401 {
		t.Errorf("status %d, want 401", got)
	}
	if got := string(c.Response.Body()); got != `{"error":"bad token"}` {
		t.Errorf("body %q", got)
	}
	if got := string(c.Response.Header.ContentType()); got != "application/json" {
		t.Errorf("content type %q", got)
	}
	if got := string(c.Response.Header.Peek("WWW-Authenticate")); got != `Bearer realm="api"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if got := c.Response.Header.Peek("X-Internal"); got != nil {
		t.Errorf("unlisted header reached the client: %q", got)
	}
	if c.Reason() == "" {
		t.Error("no reason for the access log")
	}
}

func TestDenyRedirectWithCookie(t *testing.T) {
	a := startAuth(t, func(rc *fasthttp.RequestCtx) {
		rc.Response.Header.Set("Location", "https://login.example/?rd=x")
		rc.Response.Header.Add("Set-Cookie", "csrf=abc; Path=/; HttpOnly")
		rc.SetStatusCode(302)
	})
	f := mustBuild(t, fmt.Sprintf(`{url: %q}`, a.url))
	c, up := run(t, f, "GET /app HTTP/1.1\nHost: h\n")
	if up != "" {
		t.Fatal("upstream reached")
	}
	if got := c.Response.StatusCode(); got != 302 {
		t.Errorf("status %d", got)
	}
	if got := string(c.Response.Header.Peek("Location")); got != "https://login.example/?rd=x" {
		t.Errorf("Location %q", got)
	}
	if got := c.Response.Header.String(); !strings.Contains(got, "Set-Cookie: csrf=abc; Path=/; HttpOnly\r\n") && !strings.Contains(got, "Set-Cookie: csrf=abc; path=/; HttpOnly\r\n") {
		t.Errorf("Set-Cookie not passed on:\n%s", got)
	}
}

func TestFailPolicy(t *testing.T) {
	slow := startAuth(t, func(rc *fasthttp.RequestCtx) { time.Sleep(300 * time.Millisecond); allow(rc) })
	huge := startAuth(t, func(rc *fasthttp.RequestCtx) { rc.SetStatusCode(403); rc.SetBody(make([]byte, 4096)) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	for _, tt := range []struct{ name, url, extra string }{
		{"timeout", slow.url, "timeout: 50ms"},
		{"refused", closed, ""},
		{"answer over max_response_bytes", huge.url, "max_response_bytes: 1KiB"},
	} {
		for _, fail := range []string{"closed", "open"} {
			t.Run(tt.name+"/"+fail, func(t *testing.T) {
				cfg := fmt.Sprintf(`{url: %q, fail: %s, upstream_headers: [X-User-Id]`, tt.url, fail)
				if tt.extra != "" {
					cfg += ", " + tt.extra
				}
				f := mustBuild(t, cfg+"}")
				c, up := run(t, f, "GET / HTTP/1.1\nHost: h\nX-User-Id: admin\n")
				if fail == "closed" {
					if up != "" {
						t.Fatal("upstream reached with fail: closed")
					}
					if got := c.Response.StatusCode(); got != 503 {
						t.Errorf("status %d, want 503", got)
					}
					return
				}
				if up == "" {
					t.Fatalf("upstream not reached with fail: open (status %d)", c.Response.StatusCode())
				}
				if strings.Contains(up, "admin") {
					t.Errorf("client's X-User-Id reached the upstream on fail open:\n%s", up)
				}
			})
		}
	}
}

func TestCache(t *testing.T) {
	a := startAuth(t, allow)
	denier := startAuth(t, func(rc *fasthttp.RequestCtx) { rc.SetStatusCode(401) })
	req := func(path, auth string) string {
		return "GET " + path + " HTTP/1.1\nHost: h\nAuthorization: " + auth + "\n"
	}
	tests := []struct {
		name  string
		svc   *authService
		cfg   string
		reqs  []string
		calls int32
	}{
		{"hit", a, `{ttl: 1m, key: "header:Authorization"}`, []string{req("/a", "Bearer 1"), req("/a", "Bearer 1"), req("/a", "Bearer 1")}, 1},
		{"other credential", a, `{ttl: 1m, key: "header:Authorization"}`, []string{req("/a", "Bearer 1"), req("/a", "Bearer 2")}, 2},
		{"other path, request scope", a, `{ttl: 1m, key: "header:Authorization"}`, []string{req("/a", "Bearer 1"), req("/b", "Bearer 1")}, 2},
		{"other path, credential scope", a, `{ttl: 1m, key: "header:Authorization", scope: credential}`, []string{req("/a", "Bearer 1"), req("/b", "Bearer 1")}, 1},
		{"no credential, no caching", a, `{ttl: 1m, key: "header:Authorization"}`, []string{"GET / HTTP/1.1\nHost: h\n", "GET / HTTP/1.1\nHost: h\n"}, 2},
		{"cookie key", a, `{ttl: 1m, key: "cookie:session"}`, []string{"GET / HTTP/1.1\nHost: h\nCookie: a=1; session=xyz\n", "GET / HTTP/1.1\nHost: h\nCookie: session=xyz\n"}, 1},
		{"expired", a, `{ttl: 1ms, key: "header:Authorization"}`, []string{req("/a", "Bearer 1"), "sleep", req("/a", "Bearer 1")}, 2},
		{"denials not cached", denier, `{ttl: 1m, key: "header:Authorization"}`, []string{req("/a", "Bearer 1"), req("/a", "Bearer 1")}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, fmt.Sprintf(`{url: %q, upstream_headers: [X-User-Id], cache: %s}`, tt.svc.url, tt.cfg))
			before := tt.svc.calls.Load()
			for _, r := range tt.reqs {
				if r == "sleep" {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				_, up := run(t, f, r+"X-User-Id: forged\n")
				if tt.svc == a && !strings.Contains(up, "X-User-Id: u-42\r\n") || strings.Contains(up, "forged") {
					t.Errorf("upstream request:\n%s", up)
				}
			}
			if got := tt.svc.calls.Load() - before; got != tt.calls {
				t.Errorf("auth service called %d times, want %d", got, tt.calls)
			}
		})
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(32, time.Minute)
	for i := 0; i < 1000; i++ {
		var k [32]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), 7
		c.put(k, &entry{expires: time.Now().Add(time.Minute).UnixNano()})
	}
	if n := c.len(); n > 32 {
		t.Errorf("cache holds %d entries, max 32", n)
	}
}

func TestForwardBody(t *testing.T) {
	a := startAuth(t, allow)
	f := mustBuild(t, fmt.Sprintf(`{url: %q, forward_body: {max_bytes: 16}}`, a.url))

	c := filtertest.NewCtx(t, "POST /orders HTTP/1.1\nHost: h\nContent-Type: application/json\nContent-Length: 9\n")
	c.Request.SetBodyString(`{"n":123}`)
	reached := false
	filter.NewPipeline([]filter.Filter{f}, []string{Name}).Run(c, func(c *filter.Ctx) {
		reached = string(c.Request.Body()) == `{"n":123}`
	})
	if !reached {
		t.Fatalf("upstream did not get the body (status %d)", c.Response.StatusCode())
	}
	a.mu.Lock()
	got := a.bodies[len(a.bodies)-1]
	a.mu.Unlock()
	if got != `{"n":123}` {
		t.Errorf("auth service got body %q", got)
	}
	if !strings.Contains(a.last(), "POST /check") || !strings.Contains(a.last(), "Content-Type: application/json") {
		t.Errorf("auth request:\n%s", a.last())
	}

	for _, stream := range []bool{false, true} {
		before := a.calls.Load()
		c = filtertest.NewCtx(t, "POST /orders HTTP/1.1\nHost: h\nContent-Length: 17\n")
		if stream {
			c.Request.SetBodyStream(bytes.NewReader(make([]byte, 17)), -1)
			c.Request.Header.SetContentLength(-1)
		} else {
			c.Request.SetBody(make([]byte, 17))
		}
		reached = false
		filter.NewPipeline([]filter.Filter{f}, []string{Name}).Run(c, func(*filter.Ctx) { reached = true })
		if reached || c.Response.StatusCode() != 413 || a.calls.Load() != before {
			t.Errorf("stream %v: body over max_bytes: reached %v, status %d, calls %d; want no upstream, 413, no call",
				stream, reached, c.Response.StatusCode(), a.calls.Load()-before)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{}`, "url is required"},
		{`{url: "ftp://h/x"}`, "scheme must be http or https"},
		{`{url: "http://user:hunter2@h/x"}`, "must not carry a user"},
		{`{url: "http:///x"}`, "no host"},
		{`{url: "http://h/x#f"}`, "fragment"},
		{`{url: "http://h/x", method: PUT}`, "want GET or POST"},
		{`{url: "http://h/x", method: GET, forward_body: {max_bytes: 1KiB}}`, "needs method POST"},
		{`{url: "http://h/x", timeout: -1s}`, "negative"},
		{`{url: "http://h/x", fail: maybe}`, "want closed or open"},
		{`{url: "http://h/x", forward_headers: [Host]}`, "set by the gateway"},
		{`{url: "http://h/x", forward_headers: [X-Forwarded-Uri]}`, "set by the gateway"},
		{`{url: "http://h/x", forward_headers: [Content-Length]}`, "managed by the proxy"},
		{`{url: "http://h/x", forward_headers: [A, a]}`, "given twice"},
		{`{url: "http://h/x", upstream_headers: ["X Y"]}`, "not allowed in a token"},
		{`{url: "http://h/x", client_headers: [Transfer-Encoding]}`, "managed by the proxy"},
		{`{url: "http://h/x", cache: {ttl: 1m}}`, "cache.key is required"},
		{`{url: "http://h/x", cache: {key: "query:k"}}`, "want header:<name> or cookie:<name>"},
		{`{url: "http://h/x", cache: {key: "header:"}}`, "want header:<name>"},
		{`{url: "http://h/x", cache: {key: "header:A", scope: path}}`, "want request or credential"},
		{`{url: "http://h/x", cache: {key: "header:A", ttl: -1s}}`, "negative"},
		{`{url: "http://h/x", max_response_bytes: -1}`, "negative"},
		{`{url: "http://h/x", nope: 1}`, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes a secret: %v", err)
			}
		})
	}
}

// TestCacheHitAllocatesNothing proves the cached accept path allocates nothing.
func TestCacheHitAllocatesNothing(t *testing.T) {
	a := startAuth(t, allow)
	f := mustBuild(t, fmt.Sprintf(`{url: %q, upstream_headers: [X-User-Id], cache: {ttl: 1h, key: "header:Authorization"}}`, a.url))
	c := filtertest.NewCtx(t, "GET /a HTTP/1.1\nHost: h\nAuthorization: Bearer 1\nX-User-Id: forged\n")
	if f.OnRequest(c) != filter.Continue {
		t.Fatal("denied")
	}
	allocs := testing.AllocsPerRun(200, func() {
		if f.OnRequest(c) != filter.Continue {
			t.Fatal("denied")
		}
		f.OnResponse(c)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per cached request, want 0", allocs)
	}
	if a.calls.Load() != 1 {
		t.Errorf("auth service called %d times", a.calls.Load())
	}
}

func BenchmarkExtAuthAccept(b *testing.B) {
	a := startAuth(b, allow)
	for _, tt := range []struct{ name, cache string }{
		{"cached", `cache: {ttl: 1h, key: "header:Authorization"}`},
		{"call", `fail: closed`},
	} {
		b.Run(tt.name, func(b *testing.B) {
			f := mustBuild(b, fmt.Sprintf(`{url: %q, upstream_headers: [X-User-Id], %s}`, a.url, tt.cache))
			c := filtertest.NewCtx(b, "GET /a HTTP/1.1\nHost: h\nAuthorization: Bearer 1\n")
			c.SetClientIP(netip.MustParseAddr("192.0.2.1"))
			b.ReportAllocs()
			for b.Loop() {
				if f.OnRequest(c) != filter.Continue {
					b.Fatalf("denied: %d %s", c.Response.StatusCode(), c.Reason())
				}
				f.OnResponse(c)
			}
		})
	}
}

// FuzzServiceAnswer plays any answer of the auth service through the filter: it never panics,
// never lets an unlisted header through, and the upstream is reached only on a 2xx.
func FuzzServiceAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nX-User-Id: 1\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nX-Secret: s\r\nContent-Length: 2\r\n\r\nno",
		"HTTP/1.1 302 Found\r\nLocation: /login\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-User-Id: 1\r\nX-User-Id: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"garbage",
	} {
		f.Add(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	var answer atomic.Value
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var req fasthttp.Request
				if err := req.Read(bufio.NewReader(conn)); err != nil {
					return
				}
				conn.Write([]byte(answer.Load().(string))) //nolint:errcheck // the filter judges what arrives
			}()
		}
	}()
	f.Cleanup(func() { ln.Close() })
	flt := mustBuild(f, fmt.Sprintf(`{url: "http://%s/", timeout: 200ms, upstream_headers: [X-User-Id], client_headers: [WWW-Authenticate], max_conns: 4}`, ln.Addr()))
	f.Fuzz(func(t *testing.T, s string) {
		answer.Store(s)
		c, up := run(t, flt, "GET / HTTP/1.1\nHost: h\nX-User-Id: forged\n")
		if strings.Contains(up, "forged") {
			t.Fatalf("client header reached the upstream:\n%s", up)
		}
		if up == "" {
			for k := range c.Response.Header.All() {
				switch string(k) {
				case "Www-Authenticate", "WWW-Authenticate", "Content-Type", "Content-Length", "Date", "Server":
				default:
					t.Fatalf("header %s reached the client", k)
				}
			}
		}
	})
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
