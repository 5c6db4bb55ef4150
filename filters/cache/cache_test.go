package cache

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name,
		Match: map[string]func(got, want string) bool{"Age": func(got, want string) bool { return got == want || got == "1" }}})
}

// origin is a scripted upstream: it answers with head and body, and counts its calls.
type origin struct {
	mu    sync.Mutex
	calls int
	last  string // the last request head it received
}

func (o *origin) upstream(t testing.TB, head, body string) func(*filter.Ctx) {
	return func(c *filter.Ctx) {
		o.mu.Lock()
		o.calls++
		o.last = c.Request.Header.String()
		o.mu.Unlock()
		if err := filtertest.ReadResponse(head, &c.Response); err != nil {
			t.Errorf("upstream head %q: %v", head, err)
		}
		if body != "" {
			c.Response.SetBodyString(body)
		}
	}
}

func build(t testing.TB, cfg string) *Filter {
	t.Helper()
	f := filtertest.MustNewFilter(t, New, Name, cfg).(*Filter)
	t.Cleanup(func() { f.Close() })
	return f
}

// step is one request through the filter. up is the upstream's answer; "" means the upstream
// must not be called.
type step struct {
	req    string
	up     string
	body   string
	status int
	cs     string            // want Cache-Status
	hdr    map[string]string // want these response headers ("" means absent)
	sent   []string          // the upstream request must contain these lines
	nosent []string          // and must not contain these
	want   string            // want body (when not empty)
}

func httpDate(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }

func play(t *testing.T, f *Filter, steps []step) {
	t.Helper()
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	for i, s := range steps {
		o := &origin{}
		c := filtertest.NewCtx(t, s.req)
		p.Run(c, o.upstream(t, s.up, s.body))
		where := fmt.Sprintf("step %d (%q)", i, strings.SplitN(s.req, "\n", 2)[0])
		if s.up == "" && o.calls != 0 {
			t.Errorf("%s: upstream called, want an answer from the cache", where)
		}
		if s.up != "" && o.calls != 1 {
			t.Errorf("%s: upstream calls %d, want 1", where, o.calls)
		}
		if s.status != 0 && c.Response.StatusCode() != s.status {
			t.Errorf("%s: status %d, want %d", where, c.Response.StatusCode(), s.status)
		}
		if got := string(c.Response.Header.Peek("Cache-Status")); s.cs != "" && got != s.cs {
			t.Errorf("%s: Cache-Status %q, want %q", where, got, s.cs)
		}
		for k, v := range s.hdr {
			if got := string(c.Response.Header.Peek(k)); got != v {
				t.Errorf("%s: %s %q, want %q", where, k, got, v)
			}
		}
		for _, l := range s.sent {
			if !strings.Contains(o.last, l+"\r\n") {
				t.Errorf("%s: upstream request lacks %q:\n%s", where, l, o.last)
			}
		}
		for _, l := range s.nosent {
			if strings.Contains(o.last, l) {
				t.Errorf("%s: upstream request has %q:\n%s", where, l, o.last)
			}
		}
		if s.want != "" && string(c.Response.Body()) != s.want {
			t.Errorf("%s: body %q, want %q", where, c.Response.Body(), s.want)
		}
	}
}

const get = "GET /a HTTP/1.1\nHost: api.example\n"

func TestRFC9111(t *testing.T) {
	ok := func(h string) string { return "HTTP/1.1 200 OK\n" + h }
	lm := httpDate(-240 * time.Hour)
	tests := []struct {
		name  string
		cfg   string
		steps []step
	}{
		{"max-age fresh is a hit", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), body: "one", cs: csMissStored},
			{req: get, cs: csHit, want: "one", hdr: map[string]string{"Age": "0"}},
		}},
		{"s-maxage wins over max-age", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=0, s-maxage=60\n"), cs: csMissStored},
			{req: get, cs: csHit},
		}},
		{"Expires in the future is fresh", `{}`, []step{
			{req: get, up: ok("Date: " + httpDate(0) + "\nExpires: " + httpDate(time.Hour) + "\n"), cs: csMissStored},
			{req: get, cs: csHit},
		}},
		{"Expires in the past is not stored", `{}`, []step{
			{req: get, up: ok("Date: " + httpDate(0) + "\nExpires: " + httpDate(-time.Hour) + "\n"), cs: csMiss},
			{req: get, up: ok(""), cs: csMiss},
		}},
		{"invalid Expires is expired", `{}`, []step{
			{req: get, up: ok("Expires: 0\n"), cs: csMiss},
		}},
		{"max-age wins over Expires", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nExpires: " + httpDate(-time.Hour) + "\n"), cs: csMissStored},
			{req: get, cs: csHit},
		}},
		{"Age counts against freshness", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nAge: 100\n"), cs: csMissStored},
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csStaleStore},
			{req: get, cs: csHit},
		}},
		{"Age is carried into the answer", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=600\nAge: 100\n"), cs: csMissStored},
			{req: get, cs: csHit, hdr: map[string]string{"Age": "100"}},
		}},
		{"no-store is never stored", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60, no-store\n"), cs: csMiss},
			{req: get, up: ok(""), cs: csMiss},
		}},
		{"no-store in any spelling or field line", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\ncache-control: NO-STORE\n"), cs: csMiss},
		}},
		{"private is not stored by a shared cache", `{}`, []step{
			{req: get, up: ok("Cache-Control: private, max-age=60\n"), cs: csMiss},
		}},
		{"response no-cache is revalidated every time", `{}`, []step{
			{req: get, up: ok("Cache-Control: no-cache, max-age=60\nETag: \"v1\"\n"), body: "body", cs: csMissStored},
			{req: get, up: "HTTP/1.1 304 Not Modified\nETag: \"v1\"\n", sent: []string{`If-None-Match: "v1"`},
				status: 200, cs: csRevalid, want: "body"},
		}},
		{"Authorization: not stored without public, s-maxage or must-revalidate", `{}`, []step{
			{req: get + "Authorization: Bearer a\n", up: ok("Cache-Control: max-age=60\n"), cs: csMiss},
			{req: get, up: ok(""), cs: csMiss},
		}},
		{"Authorization: stored with public", `{}`, []step{
			{req: get + "Authorization: Bearer a\n", up: ok("Cache-Control: public, max-age=60\n"), cs: csMissStored},
			{req: get, cs: csHit},
		}},
		{"Authorization: stored with s-maxage", `{}`, []step{
			{req: get + "authorization: Bearer a\n", up: ok("Cache-Control: s-maxage=60\n"), cs: csMissStored},
		}},
		{"request no-store: fetched and not stored", `{}`, []step{
			{req: get + "Cache-Control: no-store\n", up: ok("Cache-Control: max-age=60\n"), cs: csMiss},
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
		}},
		{"request no-cache goes upstream", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: get + "Cache-Control: no-cache\n", up: ok("Cache-Control: max-age=60\n"), cs: csStaleStore},
		}},
		{"Pragma: no-cache without Cache-Control", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: get + "Pragma: no-cache\n", up: ok("Cache-Control: max-age=60\n")},
		}},
		{"request max-age and min-fresh", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nAge: 30\n"), cs: csMissStored},
			{req: get + "Cache-Control: max-age=10\n", up: ok("Cache-Control: max-age=60\nAge: 30\n")},
			{req: get + "Cache-Control: min-fresh=40\n", up: ok("Cache-Control: max-age=60\nAge: 30\n")},
			{req: get + "Cache-Control: max-age=40\n", cs: csHit},
		}},
		{"max-stale serves stale, not past must-revalidate", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=1\nAge: 30\n"), cs: csMissStored},
			{req: get + "Cache-Control: max-stale=60\n", cs: csHit},
			{req: "GET /b HTTP/1.1\nHost: api.example\n", up: ok("Cache-Control: max-age=1, must-revalidate\nAge: 30\n")},
			{req: "GET /b HTTP/1.1\nHost: api.example\nCache-Control: max-stale\n", up: ok("")},
		}},
		{"only-if-cached miss is 504", `{}`, []step{
			{req: get + "Cache-Control: only-if-cached\n", status: 504, cs: csOnlyCached},
		}},
		{"Vary selects variants", `{}`, []step{
			{req: get + "Accept-Language: en\n", up: ok("Cache-Control: max-age=60\nVary: Accept-Language\n"), body: "en", cs: csMissStored},
			{req: get + "Accept-Language: fr\n", up: ok("Cache-Control: max-age=60\nVary: Accept-Language\n"), body: "fr", cs: csVaryStored},
			{req: get + "Accept-Language: en\n", cs: csHit, want: "en"},
			{req: get + "accept-language: fr\n", cs: csHit, want: "fr"},
			{req: get, up: ok("Cache-Control: max-age=60\nVary: Accept-Language\n"), cs: csVaryStored},
		}},
		{"Vary: Accept-Encoding shares spellings of one preference", `{}`, []step{
			{req: get + "Accept-Encoding: gzip, br\n", up: ok("Cache-Control: max-age=60\nVary: accept-encoding\nContent-Encoding: br\n"), cs: csMissStored},
			{req: get + "Accept-Encoding: br;q=1.0,GZIP,foo\n", cs: csHit, hdr: map[string]string{"Content-Encoding": "br"}},
			{req: get + "Accept-Encoding: gzip, br;q=0\n", up: ok("Cache-Control: max-age=60\nVary: Accept-Encoding\nContent-Encoding: gzip\n"), cs: csVaryStored},
			{req: get + "Accept-Encoding: gzip\n", cs: csHit, hdr: map[string]string{"Content-Encoding": "gzip"}},
		}},
		{"Vary: * is not stored", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nVary: *\n"), cs: csMiss},
		}},
		{"only cacheable methods; a POST invalidates", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: get, cs: csHit},
			{req: "POST /a HTTP/1.1\nHost: api.example\nContent-Length: 0\n", up: ok("Cache-Control: max-age=60\n"), hdr: map[string]string{"Cache-Status": ""}},
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
		}},
		{"a failed POST does not invalidate", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: "DELETE /a HTTP/1.1\nHost: api.example\n", up: "HTTP/1.1 500 Internal Server Error\n"},
			{req: get, cs: csHit},
		}},
		{"only cacheable statuses", `{}`, []step{
			{req: get, up: "HTTP/1.1 500 Internal Server Error\nCache-Control: max-age=60\n", cs: csMiss},
			{req: "GET /gone HTTP/1.1\nHost: api.example\n", up: "HTTP/1.1 404 Not Found\nCache-Control: max-age=60\n", cs: csMissStored},
			{req: "GET /gone HTTP/1.1\nHost: api.example\n", status: 404, cs: csHit},
			{req: "GET /r HTTP/1.1\nHost: api.example\n", up: "HTTP/1.1 206 Partial Content\nCache-Control: max-age=60\n", cs: csMiss},
		}},
		{"statuses configurable", `{statuses: [200]}`, []step{
			{req: get, up: "HTTP/1.1 404 Not Found\nCache-Control: max-age=60\n", cs: csMiss},
		}},
		{"Set-Cookie is not shared", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nSet-Cookie: id=1\n"), cs: csMiss},
			{req: get, up: ok(""), cs: csMiss},
		}},
		{"Range bypasses", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: get + "Range: bytes=0-1\n", up: "HTTP/1.1 206 Partial Content\n", cs: csBypass},
		}},
		{"HEAD is answered from the GET entry, and cached GET is not a HEAD", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), body: "abc", cs: csMissStored},
			{req: "HEAD /a HTTP/1.1\nHost: api.example\n", cs: csHit},
		}},
		{"a HEAD miss stores nothing (it has no body)", `{}`, []step{
			{req: "HEAD /a HTTP/1.1\nHost: api.example\n", up: ok("Cache-Control: max-age=60\nContent-Length: 3\n"), cs: csMiss},
			{req: get, up: ok("Cache-Control: max-age=60\n"), body: "abc", cs: csMissStored, want: "abc"},
		}},
		{"heuristic freshness is off by default", `{}`, []step{
			{req: get, up: ok("Last-Modified: " + lm + "\n"), cs: csMissStored},
			{req: get, up: "HTTP/1.1 304 Not Modified\n", sent: []string{"If-Modified-Since: " + lm}, cs: csRevalid},
		}},
		{"heuristic freshness when enabled", `{heuristic: true}`, []step{
			{req: get, up: ok("Last-Modified: " + lm + "\n"), cs: csMissStored},
			{req: get, cs: csHit},
		}},
		{"ttl overrides the response's lifetime", `{ttl: 60s}`, []step{
			{req: get, up: ok(""), cs: csMissStored},
			{req: get, cs: csHit},
			{req: "GET /n HTTP/1.1\nHost: api.example\n", up: ok("Cache-Control: max-age=60, no-store\n"), cs: csMiss},
		}},
		{"key: host is case-insensitive, path is exact", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: "GET /a HTTP/1.1\nHost: API.example\n", cs: csHit},
			{req: "GET //a HTTP/1.1\nHost: api.example\n", up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: "GET /a HTTP/1.1\nHost: other.example\n", up: ok(""), cs: csMiss},
		}},
		{"key: chosen query parameters", `{key: {query: [id]}}`, []step{
			{req: "GET /a?id=1&utm=x HTTP/1.1\nHost: h\n", up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: "GET /a?utm=y&id=1 HTTP/1.1\nHost: h\n", cs: csHit},
			{req: "GET /a?id=2 HTTP/1.1\nHost: h\n", up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
		}},
		{"key: chosen query parameters cannot be forged by encoding", `{key: {query: [id, x]}}`, []step{
			{req: "GET /a?id=1%26x%3D2 HTTP/1.1\nHost: h\n", up: ok("Cache-Control: max-age=60\n"), body: "forged", cs: csMissStored},
			{req: "GET /a?id=1&x=2 HTTP/1.1\nHost: h\n", up: ok("Cache-Control: max-age=60\n"), body: "real", cs: csMissStored},
			{req: "GET /a?x=2&id=1 HTTP/1.1\nHost: h\n", cs: csHit, want: "real"},
		}},
		{"key: whole query by default", `{}`, []step{
			{req: "GET /a?x=1 HTTP/1.1\nHost: h\n", up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: "GET /a?x=2 HTTP/1.1\nHost: h\n", up: ok("Cache-Control: max-age=60\n"), cs: csMissStored},
			{req: "GET /a?x=1 HTTP/1.1\nHost: h\n", cs: csHit},
		}},
		{"key: chosen headers", `{key: {headers: [X-Tenant]}}`, []step{
			{req: get + "X-Tenant: a\n", up: ok("Cache-Control: max-age=60\n"), body: "a", cs: csMissStored},
			{req: get + "x-tenant: b\n", up: ok("Cache-Control: max-age=60\n"), body: "b", cs: csMissStored},
			{req: get + "X-Tenant: a\n", cs: csHit, want: "a"},
		}},
		{"max_body_bytes: a larger body passes unstored", `{max_body_bytes: 4}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\n"), body: "12345", cs: csTooLarge, want: "12345"},
			{req: get, up: ok("Cache-Control: max-age=60\n"), body: "1234", cs: csMissStored},
			{req: get, cs: csHit, want: "1234"},
		}},
		{"revalidation: 304 refreshes the entry", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nAge: 100\nETag: \"v1\"\nX-V: 1\n"), body: "body", cs: csMissStored},
			{req: get, up: "HTTP/1.1 304 Not Modified\nCache-Control: max-age=60\nETag: \"v1\"\nX-V: 2\n",
				sent: []string{`If-None-Match: "v1"`}, status: 200, cs: csRevalid, want: "body", hdr: map[string]string{"X-V": "2"}},
			{req: get, cs: csHit, want: "body", hdr: map[string]string{"X-V": "2"}},
		}},
		{"revalidation: a new 200 replaces the entry", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nAge: 100\nETag: \"v1\"\n"), body: "old", cs: csMissStored},
			{req: get, up: ok("Cache-Control: max-age=60\nETag: \"v2\"\n"), body: "new", cs: csStaleStore},
			{req: get, cs: csHit, want: "new"},
		}},
		{"a client's conditional is answered 304 from the cache", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=60\nETag: \"v1\"\nLast-Modified: " + lm + "\n"), body: "body", cs: csMissStored},
			{req: get + "If-None-Match: \"x\", W/\"v1\"\n", status: 304, cs: csHit, hdr: map[string]string{"ETag": `"v1"`}},
			{req: get + "If-None-Match: \"x\"\n", status: 200, cs: csHit, want: "body"},
			{req: get + "If-Modified-Since: " + httpDate(0) + "\n", status: 304, cs: csHit},
			{req: get + "If-Modified-Since: " + httpDate(-300*time.Hour) + "\n", status: 200, cs: csHit},
		}},
		{"a client's conditional on a miss: the cache fetches whole, then answers 304", `{}`, []step{
			{req: get + "If-None-Match: \"v1\"\n", up: ok("Cache-Control: max-age=60\nETag: \"v1\"\n"), body: "body",
				nosent: []string{"If-None-Match"}, status: 304},
			{req: get, cs: csHit, want: "body"},
		}},
		{"stale-if-error: the upstream fails, the stale entry answers", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=1, stale-if-error=60\nAge: 10\n"), body: "kept", cs: csMissStored},
			{req: get, up: "HTTP/1.1 503 Service Unavailable\n", status: 200, cs: csSIE, want: "kept"},
		}},
		{"stale-if-error from config", `{stale_if_error: 60s}`, []step{
			{req: get, up: ok("Cache-Control: max-age=1\nAge: 10\n"), body: "kept", cs: csMissStored},
			{req: get, up: "HTTP/1.1 502 Bad Gateway\n", status: 200, cs: csSIE},
		}},
		{"stale-if-error never past must-revalidate or its window", `{}`, []step{
			{req: get, up: ok("Cache-Control: max-age=1, stale-if-error=60, must-revalidate\nAge: 10\n"), cs: csMissStored},
			{req: get, up: "HTTP/1.1 503 Service Unavailable\n", status: 503},
			{req: "GET /b HTTP/1.1\nHost: api.example\n", up: ok("Cache-Control: max-age=1, stale-if-error=5\nAge: 10\n"), cs: csMissStored},
			{req: "GET /b HTTP/1.1\nHost: api.example\n", up: "HTTP/1.1 503 Service Unavailable\n", status: 503},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { play(t, build(t, tt.cfg), tt.steps) })
	}
}

// TestUpstreamFieldCase: the proxy keeps the upstream's field names as sent, so every rule
// reads them in any letter case.
func TestUpstreamFieldCase(t *testing.T) {
	f := build(t, `{}`)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	run := func(head string) *filter.Ctx {
		c := filtertest.NewCtx(t, get)
		p.Run(c, func(c *filter.Ctx) {
			c.Response.Header.DisableNormalizing()
			if err := filtertest.ReadResponse(head, &c.Response); err != nil {
				t.Fatal(err)
			}
		})
		return c
	}
	run("HTTP/1.1 200 OK\ncache-control: max-age=60\nage: 100\nset-cookie: a=b\n")
	c := run("HTTP/1.1 200 OK\ncache-control: max-age=60\nage: 100\n")
	if cs := string(c.Response.Header.Peek("Cache-Status")); cs != csMissStored {
		t.Fatalf("Cache-Status %q after a set-cookie answer, want it stored now", cs)
	}
	// age: 100 was read: the entry is stale, so the next request goes upstream.
	play(t, f, []step{{req: get, up: "HTTP/1.1 200 OK\n", cs: csStale}})
}

// TestStoredBodyIsACopy: what the cache stores never aliases fasthttp's buffers, which are
// reused by the next request on the connection.
func TestStoredBodyIsACopy(t *testing.T) {
	f := build(t, `{}`)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	c := filtertest.NewCtx(t, get)
	o := &origin{}
	p.Run(c, o.upstream(t, "HTTP/1.1 200 OK\nCache-Control: max-age=60\nX-A: value\n", "original"))
	copy(c.Response.Body(), "XXXXXXXX")
	copy(c.Response.Header.Peek("X-A"), "XXXXX")
	play(t, f, []step{{req: get, cs: csHit, want: "original", hdr: map[string]string{"X-A": "value"}}})
}

// TestCoalescing: 100 concurrent misses of one key cause one upstream request; the others are
// answered from the entry it stored.
func TestCoalescing(t *testing.T) {
	f := build(t, `{}`)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	const n = 100
	var calls atomic.Int32
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := filtertest.NewCtx(t, get)
			started.Done()
			p.Run(c, func(c *filter.Ctx) {
				calls.Add(1)
				<-release // hold the leader until every request has started
				_ = filtertest.ReadResponse("HTTP/1.1 200 OK\nCache-Control: max-age=60\n", &c.Response)
				c.Response.SetBodyString("shared")
			})
			bodies[i] = string(c.Response.Body())
		}()
	}
	started.Wait()
	time.Sleep(10 * time.Millisecond) // let them reach the cache; a late one hits the entry anyway
	close(release)
	wg.Wait()
	if got := calls.Load(); got != 1 {
		t.Errorf("upstream requests: %d, want 1", got)
	}
	for i, b := range bodies {
		if b != "shared" {
			t.Fatalf("request %d got body %q", i, b)
		}
	}
}

// TestCoalescedRevalidation: concurrent requests finding one stale entry make one conditional
// upstream request; the others are answered from the refreshed entry.
func TestCoalescedRevalidation(t *testing.T) {
	f := build(t, `{}`)
	play(t, f, []step{{req: get, up: "HTTP/1.1 200 OK\nCache-Control: max-age=1\nAge: 5\nETag: \"v1\"\n", body: "body", cs: csMissStored}})
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	const n = 20
	var calls atomic.Int32
	var started, wg sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := filtertest.NewCtx(t, get)
			started.Done()
			p.Run(c, func(c *filter.Ctx) {
				calls.Add(1)
				<-release
				_ = filtertest.ReadResponse("HTTP/1.1 304 Not Modified\nCache-Control: max-age=60\nETag: \"v1\"\n", &c.Response)
			})
			bodies[i] = string(c.Response.Body())
		}()
	}
	started.Wait()
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	if got := calls.Load(); got != 1 {
		t.Errorf("upstream requests: %d, want 1", got)
	}
	for i, b := range bodies {
		if b != "body" {
			t.Fatalf("request %d got body %q", i, b)
		}
	}
}

// TestHitForPass: once a key's response could not be stored, concurrent misses of it no
// longer wait for each other.
func TestHitForPass(t *testing.T) {
	f := build(t, `{coalesce_wait: 1h}`)
	private := "HTTP/1.1 200 OK\nCache-Control: private\n"
	play(t, f, []step{{req: get, up: private, cs: csMiss}})
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	inUpstream, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		p.Run(filtertest.NewCtx(t, get), func(c *filter.Ctx) {
			close(inUpstream)
			<-release
			_ = filtertest.ReadResponse(private, &c.Response)
		})
	}()
	<-inUpstream
	// Were this request coalesced, it would wait for the one above, which waits for release.
	play(t, f, []step{{req: get, up: private, cs: csMiss}})
	close(release)
	<-done
	// A storable answer replaces the mark.
	play(t, f, []step{
		{req: get, up: "HTTP/1.1 200 OK\nCache-Control: max-age=60\n", cs: csMissStored},
		{req: get, cs: csHit},
	})
}

// TestStaleWhileRevalidate: while one request revalidates a stale entry, the others are served
// the stale entry at once.
func TestStaleWhileRevalidate(t *testing.T) {
	f := build(t, `{}`)
	play(t, f, []step{{req: get, up: "HTTP/1.1 200 OK\nCache-Control: max-age=1, stale-while-revalidate=60\nAge: 5\n", body: "old", cs: csMissStored}})
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	inUpstream, release := make(chan struct{}), make(chan struct{})
	done := make(chan string)
	go func() {
		c := filtertest.NewCtx(t, get)
		p.Run(c, func(c *filter.Ctx) {
			close(inUpstream)
			<-release
			_ = filtertest.ReadResponse("HTTP/1.1 200 OK\nCache-Control: max-age=60\n", &c.Response)
			c.Response.SetBodyString("new")
		})
		done <- string(c.Response.Header.Peek("Cache-Status"))
	}()
	<-inUpstream
	play(t, f, []step{{req: get, cs: csStaleSWR, want: "old"}})
	close(release)
	if cs := <-done; cs != csStaleStore {
		t.Errorf("revalidating request: Cache-Status %q, want %q", cs, csStaleStore)
	}
	play(t, f, []step{{req: get, cs: csHit, want: "new"}})
}

// TestSurvivesReload: a filter built again for a new snapshot from the same definition finds
// the old one's entries.
func TestSurvivesReload(t *testing.T) {
	shared := filter.NewShared()
	mk := func() *Filter {
		tree, _ := filtertest.ParseYAML(`{max_bytes: 1MiB}`)
		f, err := New(filter.Env{Route: "r", Filter: Name, Shared: shared}, decoderOf(tree))
		if err != nil {
			t.Fatal(err)
		}
		return f.(*Filter)
	}
	old := mk()
	play(t, old, []step{{req: get, up: "HTTP/1.1 200 OK\nCache-Control: max-age=60\n", cs: csMissStored}})
	next := mk()
	old.Close()
	play(t, next, []step{{req: get, cs: csHit}})
	next.Close()
	if shared.Len() != 0 {
		t.Errorf("store not freed after the last snapshot: %d live", shared.Len())
	}
}

// TestMetrics: counters by outcome and the store's gauges, per route.
func TestMetrics(t *testing.T) {
	tree, _ := filtertest.ParseYAML(`{max_body_bytes: 4}`)
	fl, err := New(filter.Env{Route: "metrics-test", Filter: Name}, decoderOf(tree))
	if err != nil {
		t.Fatal(err)
	}
	f := fl.(*Filter)
	ok := "HTTP/1.1 200 OK\nCache-Control: max-age=60\n"
	// Counters live as long as the process (go test -count=N runs this N times): compare growth.
	before := telemetry.Metrics.Group(MetricsGroup)["metrics-test"]
	play(t, f, []step{
		{req: get, up: ok, body: "abc", cs: csMissStored},
		{req: get, cs: csHit},
		{req: get, cs: csHit},
		{req: "GET /big HTTP/1.1\nHost: h\n", up: ok, body: "12345", cs: csTooLarge},
		{req: get + "Range: bytes=0-1\n", up: ok, cs: csBypass},
	})
	got := telemetry.Metrics.Group(MetricsGroup)["metrics-test"]
	// entries: the stored response and the too-large key's hit-for-pass mark.
	want := map[string]int64{"hits": 2, "misses": 2, "stored": 1, "too_large": 1, "bypass": 1, "entries": 2}
	for k, v := range want {
		if k != "entries" {
			v += before[k]
		}
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if got["bytes"] <= 3 {
		t.Errorf("bytes = %d, want the entry's cost", got["bytes"])
	}
	f.Close()
	if got := telemetry.Metrics.Group(MetricsGroup)["metrics-test"]; got["bytes"] != 0 || got["entries"] != 0 {
		t.Errorf("after close: %v, want no bytes or entries", got)
	}
}

func TestPurge(t *testing.T) {
	f := build(t, `{}`)
	ok := "HTTP/1.1 200 OK\nCache-Control: max-age=60\nCache-Tag: users, v1\n"
	for _, path := range []string{"/users/1", "/users/2", "/other"} {
		play(t, f, []step{{req: "GET " + path + " HTTP/1.1\nHost: h\n", up: ok, cs: csMissStored}})
	}
	if n := Purge("h/users/1", "", ""); n != 1 {
		t.Errorf("purge key: %d removed, want 1", n)
	}
	if n := Purge("", "h/users/", ""); n != 1 {
		t.Errorf("purge prefix: %d removed, want 1", n)
	}
	if n := Purge("", "", "v1"); n != 1 {
		t.Errorf("purge tag: %d removed, want 1", n)
	}
	play(t, f, []step{{req: "GET /other HTTP/1.1\nHost: h\n", up: ok, cs: csMissStored}})
}

func TestBuildErrors(t *testing.T) {
	for _, cfg := range []string{
		`{ttl: -1s}`, `{max_body_bytes: 2MiB, max_bytes: 1MiB}`, `{statuses: [206]}`, `{statuses: [304]}`,
		`{statuses: [99]}`, `{tag_header: "a b"}`, `{key: {headers: ["a:b"]}}`, `{key: {query: [""]}}`, `{unknown: 1}`,
	} {
		if _, err := filtertest.NewFilter(t, New, Name, cfg); err == nil {
			t.Errorf("%s: built, want an error", cfg)
		}
	}
}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		in   string
		want directives
	}{
		{"max-age=60, no-cache", directives{maxAge: 60 * time.Second, noCache: true}},
		{`MAX-AGE="10", s-maxage=5`, directives{maxAge: 10 * time.Second, sMaxAge: 5 * time.Second}},
		{"max-age=abc", directives{maxAge: 0}},
		{"max-age=60, max-age=10", directives{maxAge: 10 * time.Second}},
		{"max-age=99999999999999999999", directives{maxAge: maxDelta * time.Second}},
		{"private, public, must-revalidate", directives{private: true, public: true, mustRevalidate: true}},
		{"stale-while-revalidate=30,stale-if-error=60", directives{staleWhileRevalidate: 30 * time.Second, staleIfError: 60 * time.Second}},
		{"max-stale", directives{maxStaleAny: true}},
		{",,  ,", directives{}},
	}
	for _, tt := range tests {
		var got directives
		parseCacheControl(&got, [][]byte{[]byte(tt.in)})
		want := tt.want
		for _, p := range []*time.Duration{&want.maxAge, &want.sMaxAge, &want.minFresh, &want.maxStale, &want.staleWhileRevalidate, &want.staleIfError} {
			if *p == 0 && !(tt.in == "max-age=abc" && p == &want.maxAge) {
				*p = -1
			}
		}
		want.present = true
		if got != want {
			t.Errorf("%q: got %+v, want %+v", tt.in, got, want)
		}
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", `no-cache="a, b"`, "s-maxage=-1", "max-stale=", "=", ",=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d directives
		parseCacheControl(&d, [][]byte{[]byte(s)})
		if d.maxAge < -1 || d.maxAge > maxDelta*time.Second {
			t.Fatalf("max-age out of range: %v", d.maxAge)
		}
	})
}

func FuzzVaryAndCodings(f *testing.F) {
	for _, s := range []string{"gzip, br;q=0", "*", "accept-encoding, Accept-Language", "q=0.0", ";;,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parseVary([][]byte{[]byte(s)})
		b := appendCodings(nil, [][]byte{[]byte(s)})
		if bytes.Contains(b, []byte("\n")) {
			t.Fatalf("newline in key part %q", b)
		}
		etagMatch([]byte(s), []byte(`"x"`))
		parseAge([]byte(s))
	})
}

// TestHitAllocs: a hit allocates nothing.
func TestHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	f := build(t, `{}`)
	play(t, f, []step{{req: get + "Accept-Encoding: gzip\n", up: "HTTP/1.1 200 OK\nCache-Control: max-age=60\nVary: Accept-Encoding\n", body: "x", cs: csMissStored}})
	c := filtertest.NewCtx(t, get+"Accept-Encoding: gzip\n")
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	run := func() { p.Run(c, func(*filter.Ctx) { t.Fatal("miss") }) }
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("allocs per hit: %v, want 0", n)
	}
}

func BenchmarkHit(b *testing.B) {
	f := build(b, `{}`)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	c := filtertest.NewCtx(b, get)
	p.Run(c, (&origin{}).upstream(b, "HTTP/1.1 200 OK\nCache-Control: max-age=600\n", strings.Repeat("x", 1024)))
	b.ReportAllocs()
	for b.Loop() {
		p.Run(c, func(*filter.Ctx) { b.Fatal("miss") })
	}
}

func decoderOf(tree any) filter.Decoder {
	return func(v any) error { return config.DecodeStrict(tree, v) }
}

// FuzzExchange plays a request and an upstream answer with arbitrary cache headers through the
// filter twice: it never panics, and whatever it answers from the cache is what the upstream
// sent.
func FuzzExchange(f *testing.F) {
	f.Add("max-age=60", "Accept-Encoding", "5", httpDate(time.Hour), "gzip", "no-cache")
	f.Add("s-maxage=1, stale-if-error=9", "*", "x", "0", "br;q=0", "max-stale")
	f.Add("no-store", "a, b, ,", "99999999999999999999", "", "", "only-if-cached")
	f.Fuzz(func(t *testing.T, cc, vary, age, expires, ae, reqCC string) {
		for _, s := range []string{cc, vary, age, expires, ae, reqCC} {
			if strings.ContainsAny(s, "\r\n\x00") || httpsyntaxBad(s) {
				return
			}
		}
		fl := build(t, `{}`)
		p := filter.NewPipeline([]filter.Filter{fl}, []string{Name})
		req := get + "Accept-Encoding: " + ae + "\nCache-Control: " + reqCC + "\n"
		head := "HTTP/1.1 200 OK\nCache-Control: " + cc + "\nVary: " + vary + "\nAge: " + age + "\nExpires: " + expires + "\n"
		for range 2 {
			c := filtertest.NewCtx(t, req)
			var probe fasthttp.Response
			if err := filtertest.ReadResponse(head, &probe); err != nil {
				return
			}
			p.Run(c, func(c *filter.Ctx) {
				_ = filtertest.ReadResponse(head, &c.Response)
				c.Response.SetBodyString("body")
			})
			if b := string(c.Response.Body()); c.Response.StatusCode() == 200 && b != "body" {
				t.Fatalf("body %q", b)
			}
		}
	})
}

func httpsyntaxBad(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 && s[i] != '\t' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// fakeUpstreams is the snapshot's upstreams for background revalidation: one upstream, be,
// whose answers the test scripts.
type fakeUpstreams struct{ caller *fakeCaller }

func (u *fakeUpstreams) Upstream(name string) (filter.Caller, bool) {
	return u.caller, name == "be"
}

type fakeCaller struct {
	mu      sync.Mutex
	head    string // the answer's head
	body    string
	reqs    []string // the request heads received
	release chan struct{}
}

func (fc *fakeCaller) Call(req *fasthttp.Request, resp *fasthttp.Response, _ time.Duration, _ int) error {
	fc.mu.Lock()
	fc.reqs = append(fc.reqs, req.Header.String())
	head, body, release := fc.head, fc.body, fc.release
	fc.mu.Unlock()
	if release != nil {
		<-release
	}
	if err := filtertest.ReadResponse(head, resp); err != nil {
		return err
	}
	resp.SetBodyString(body)
	return nil
}

// TestStaleWhileRevalidateInBackground: with the route's upstream at hand, every request within
// stale-while-revalidate gets the stale entry at once, and one conditional GET refreshes it in
// the background (a HEAD that found it stale included).
func TestStaleWhileRevalidateInBackground(t *testing.T) {
	fc := &fakeCaller{head: "HTTP/1.1 304 Not Modified\nCache-Control: max-age=60\nETag: \"v1\"\nX-V: 2\n", release: make(chan struct{})}
	tree, _ := filtertest.ParseYAML(`{}`)
	fl, err := New(filter.Env{Route: "swr-bg", Filter: Name, Upstreams: &fakeUpstreams{fc}, Upstream: "be"}, decoderOf(tree))
	if err != nil {
		t.Fatal(err)
	}
	f := fl.(*Filter)
	t.Cleanup(func() { f.Close() })
	play(t, f, []step{
		{req: get, up: "HTTP/1.1 200 OK\nCache-Control: max-age=1, stale-while-revalidate=60\nAge: 5\nETag: \"v1\"\nX-V: 1\n", body: "old", cs: csMissStored},
		{req: "HEAD /a HTTP/1.1\nHost: api.example\nIf-None-Match: \"zz\"\n", cs: csStaleSWR},
	})
	f.store.mu.Lock()
	cl := f.store.inflight[unsafeString([]byte("GET api.example/a"))]
	f.store.mu.Unlock()
	if cl == nil {
		t.Fatal("no revalidation in flight")
	}
	// While it runs, others are served stale too, and start no second one.
	play(t, f, []step{{req: get, cs: csStaleSWR, want: "old", hdr: map[string]string{"X-V": "1"}}})
	close(fc.release)
	<-cl.done
	play(t, f, []step{{req: get, cs: csHit, want: "old", hdr: map[string]string{"X-V": "2"}}})
	if len(fc.reqs) != 1 {
		t.Fatalf("background requests: %d, want 1", len(fc.reqs))
	}
	r := fc.reqs[0]
	for _, want := range []string{"GET /a HTTP/1.1\r\n", "If-None-Match: \"v1\"\r\n"} {
		if !strings.Contains(r, want) {
			t.Errorf("background request lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r, "zz") {
		t.Errorf("background request carries the client's conditional:\n%s", r)
	}

	// A storable 200 replaces the entry; an error leaves it.
	fc.mu.Lock()
	fc.head, fc.body, fc.release = "HTTP/1.1 200 OK\nCache-Control: max-age=1, stale-while-revalidate=60\nAge: 5\nETag: \"v2\"\n", "new", nil
	fc.mu.Unlock()
	play(t, f, []step{{req: "GET /b HTTP/1.1\nHost: api.example\n", up: "HTTP/1.1 200 OK\nCache-Control: max-age=1, stale-while-revalidate=60\nAge: 5\n", body: "b-old", cs: csMissStored}})
	play(t, f, []step{{req: "GET /b HTTP/1.1\nHost: api.example\n", cs: csStaleSWR, want: "b-old"}})
	waitIdle(t, f)
	play(t, f, []step{{req: "GET /b HTTP/1.1\nHost: api.example\n", cs: csStaleSWR, want: "new"}})
}

// waitIdle waits until no request leads a key (a background revalidation has ended).
func waitIdle(t *testing.T, f *Filter) {
	t.Helper()
	for i := 0; ; i++ {
		f.store.mu.Lock()
		n := len(f.store.inflight)
		f.store.mu.Unlock()
		if n == 0 {
			return
		}
		if i > 5000 {
			t.Fatal("a revalidation never ended")
		}
		time.Sleep(time.Millisecond)
	}
}
