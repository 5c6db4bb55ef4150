package redirect

import (
	"os"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// newCtx returns a Ctx for raw with the router's parameters set as "name=value" pairs.
func newCtx(t testing.TB, raw string, params ...string) *filter.Ctx {
	t.Helper()
	c := filtertest.NewCtx(t, raw)
	store, n := c.ParamStore()
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		store[*n] = filter.Param{Key: k, Value: []byte(v)}
		*n++
	}
	return c
}

func TestRedirects(t *testing.T) {
	for _, tt := range []struct {
		name, cfg, req string
		params         []string
		status         int    // 0: the request continues
		location       string // Location when status is a redirect
	}{
		{"https shorthand", "{ https: true }", "GET /a/b?x=1&y HTTP/1.1\nHost: shop.example\n", nil, 308, "https://shop.example/a/b?x=1&y"},
		{"https strips the port", "{ https: true }", "GET / HTTP/1.1\nHost: shop.example:8080\n", nil, 308, "https://shop.example/"},
		{"https with a port", "{ https: true, https_port: 8443 }", "GET /p HTTP/1.1\nHost: shop.example:8080\n", nil, 308, "https://shop.example:8443/p"},
		{"https port 443 not written", "{ https: true, https_port: 443 }", "GET /p HTTP/1.1\nHost: shop.example\n", nil, 308, "https://shop.example/p"},
		{"https IPv6 host", "{ https: true }", "GET /p HTTP/1.1\nHost: [2001:db8::1]:80\n", nil, 308, "https://[2001:db8::1]/p"},
		{"https, already https", "{ https: true }", "GET /p HTTP/1.1\nHost: shop.example\nX-Forwarded-Proto: https\n", nil, 0, ""},
		{"https, proxy list, case", "{ https: true }", "GET /p HTTP/1.1\nHost: shop.example\nX-Forwarded-Proto: HTTPS, http\n", nil, 0, ""},
		{"https, forwarded http", "{ https: true, status: 301 }", "GET /p HTTP/1.1\nHost: shop.example\nX-Forwarded-Proto: http\n", nil, 301, "https://shop.example/p"},
		{"https, no query kept", "{ https: true, keep_query: false }", "GET /p?q HTTP/1.1\nHost: a.example\n", nil, 308, "https://a.example/p"},
		{"template with host and path", `{ to: "https://{host}/new{path}" }`, "GET /old?q=1 HTTP/1.1\nHost: a.example:8443\n", nil, 307, "https://a.example:8443/new/old?q=1"},
		{"literal host, params", `{ to: "https://api.example.com/v2/users/{id}/posts/{post}", status: 301 }`,
			"GET /users/42/p/7 HTTP/1.1\nHost: old.example\n", []string{"id=42", "post=7"}, 301, "https://api.example.com/v2/users/42/posts/7"},
		{"catch-all keeps slashes", `{ to: "/files/{rest}", status: 302 }`, "GET /f/a/b.txt HTTP/1.1\nHost: x\n", []string{"rest=a/b.txt"}, 302, "/files/a/b.txt"},
		{"missing parameter is empty", `{ to: "/u/{nope}" }`, "GET / HTTP/1.1\nHost: x\n", nil, 307, "/u/"},
		{"scheme", `{ to: "{scheme}://www.example.com{path}" }`, "GET /p HTTP/1.1\nHost: example.com\n", nil, 307, "http://www.example.com/p"},
		{"explicit query", `{ to: "/search?q={query}&from=old" }`, "GET /s?a=1 HTTP/1.1\nHost: x\n", nil, 307, "/search?q=a=1&from=old"},
		{"literal query joined with &", `{ to: "/search?from=old" }`, "GET /s?a=1 HTTP/1.1\nHost: x\n", nil, 307, "/search?from=old&a=1"},
		{"literal query, none sent", `{ to: "/search?from=old" }`, "GET /s HTTP/1.1\nHost: x\n", nil, 307, "/search?from=old"},
		{"status 303", `{ to: "/done", status: 303 }`, "POST /form HTTP/1.1\nHost: x\nContent-Length: 0\n", nil, 303, "/done"},

		// What a client controls is escaped, and never chooses the destination host.
		{"CR LF in a parameter", `{ to: "https://a.example/{id}" }`, "GET / HTTP/1.1\nHost: x\n", []string{"id=1\r\nSet-Cookie: a=b"}, 307, "https://a.example/1%0D%0ASet-Cookie:%20a=b"},
		{"hash, space, backslash, non-ASCII", `{ to: "/x/{id}" }`, "GET / HTTP/1.1\nHost: x\n", []string{"id=a#b c\\d\xc3\xa9"}, 307, "/x/a%23b%20c%5Cd%C3%A9"},
		{"question mark in a parameter", `{ to: "/x/{id}" }`, "GET / HTTP/1.1\nHost: x\n", []string{"id=a?b"}, 307, "/x/a%3Fb"},
		{"leading slashes from a parameter", `{ to: "/{rest}" }`, "GET / HTTP/1.1\nHost: x\n", []string{"rest=/evil.example/x"}, 307, "/evil.example/x"},
		{"leading slashes from the path", `{ to: "{path}" }`, "GET //evil.example/x HTTP/1.1\nHost: x\n", nil, 307, "/evil.example/x"},
		{"escaped backslash cannot make //", `{ to: "/{rest}" }`, "GET / HTTP/1.1\nHost: x\n", []string{"rest=\\evil.example"}, 307, "/%5Cevil.example"},
		{"bad Host", `{ to: "https://{host}/" }`, "GET / HTTP/1.1\nHost: x\n", nil, 0, ""}, // replaced below
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := filtertest.MustNewFilter(t, New, Name, tt.cfg)
			c := newCtx(t, tt.req, tt.params...)
			if tt.name == "bad Host" {
				// The edge refuses such a Host; the filter still never writes it into a URL.
				c.Request.Header.SetHost("a.example\r\nX: y")
				tt.status = 400
			}
			st := f.OnRequest(c)
			if tt.status == 0 {
				if st != filter.Continue || c.Response.StatusCode() != 200 || len(c.Response.Header.Peek("Location")) > 0 {
					t.Fatalf("want the request to continue; got %v, status %d", st, c.Response.StatusCode())
				}
				return
			}
			if st != filter.Stop {
				t.Fatal("the request continued")
			}
			if got := c.Response.StatusCode(); got != tt.status {
				t.Errorf("status %d, want %d", got, tt.status)
			}
			if got := string(c.Response.Header.Peek("Location")); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			if tt.status != 400 && len(c.Response.Body()) != 0 {
				t.Errorf("body %q", c.Response.Body())
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct{ cfg, want string }{
		{"{}", "to is required"},
		{`{ to: "/a", https: true }`, "not both"},
		{`{ to: "/a", https_port: 8443 }`, "https_port is for https"},
		{"{ https: true, https_port: 70000 }", "not a port"},
		{`{ to: "/a", status: 200 }`, "not a redirect"},
		{`{ to: "/a", status: 304 }`, "not a redirect"},
		{`{ to: "{dest}" }`, "absolute http(s) URL"},
		{`{ to: "{path}x" }`, ""}, // {path} alone is a path: accepted
		{`{ to: "//evil.example/x" }`, "names another host"},
		{`{ to: "https://{id}/x" }`, "host part may only hold"},
		{`{ to: "https://{host}{id}" }`, "host part may only hold"},
		{`{ to: "https://{host}:{port}/" }`, "host part may only hold"},
		{`{ to: "{scheme}://{query}" }`, "host part may only hold"},
		{`{ to: "https:///x" }`, "no host"},
		{`{ to: "https://{path}" }`, "no host"},
		{`{ to: "ftp://a.example/" }`, "absolute http(s) URL"},
		{`{ to: "javascript:alert(1)" }`, "absolute http(s) URL"},
		{`{ to: "https://a b/" }`, "not allowed"},
		{`{ to: "https://a.example/x y" }`, "not allowed"},
		{`{ to: "https://a@evil.example/" }`, "not allowed in the host part"},
		{`{ to: "/a\\b" }`, "not allowed"},
		{`{ to: "/a{id" }`, "unterminated"},
		{`{ to: "/a}" }`, "unmatched"},
		{`{ to: "/a/{1x}" }`, "neither host"},
		{`{ to: "/a?{query}", keep_query: true }`, "remove keep_query"},
		{`{ to: "/a", code: 301 }`, "code"},
	} {
		_, err := filtertest.NewFilter(t, New, Name, tt.cfg)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.cfg, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, cfg := range []string{"{ https: true }", `{ to: "https://api.example.com/v2/{id}{path}", status: 301 }`} {
		f := filtertest.MustNewFilter(t, New, Name, cfg)
		c := newCtx(t, "GET /users/42?x=1 HTTP/1.1\nHost: shop.example:80\n", "id=42")
		allocs := testing.AllocsPerRun(200, func() { f.OnRequest(c) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per request", cfg, allocs)
		}
	}
}

func BenchmarkRedirect(b *testing.B) {
	for _, bc := range []struct{ name, cfg string }{
		{"https", "{ https: true }"},
		{"template", `{ to: "https://api.example.com/v2/users/{id}{path}" }`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := filtertest.MustNewFilter(b, New, Name, bc.cfg)
			c := newCtx(b, "GET /users/42/orders?page=2 HTTP/1.1\nHost: shop.example\n", "id=42")
			b.ReportAllocs()
			for b.Loop() {
				f.OnRequest(c)
			}
		})
	}
}

// FuzzRedirect: whatever the path, query, parameter and Host, the Location carries no byte a
// header may not hold, keeps the configured host, and a relative one never names a host.
func FuzzRedirect(f *testing.F) {
	f.Add("/a/b", "x=1", "42", "shop.example")
	f.Add("//evil", "", "/\\evil", "a.example:80")
	f.Add("/%0d%0a", "a\r\nb", "\x00\xff", "[::1]:1")
	abs := filtertest.MustNewFilter(f, New, Name, `{ to: "https://api.example.com/{id}{path}" }`)
	rel := filtertest.MustNewFilter(f, New, Name, `{ to: "/{id}{path}" }`)
	https := filtertest.MustNewFilter(f, New, Name, `{ https: true }`)
	f.Fuzz(func(t *testing.T, path, query, param, host string) {
		c := newCtx(t, "GET / HTTP/1.1\nHost: x\n", "id="+param)
		c.URI().SetPath("/" + path)
		c.URI().SetQueryString(query)
		c.Request.Header.SetHost(host)
		for _, tc := range []struct {
			f      filter.Filter
			prefix string
		}{{abs, "https://api.example.com/"}, {rel, "/"}, {https, "https://"}} {
			c.Response.Reset()
			if tc.f.OnRequest(c) != filter.Stop {
				t.Fatal("continued")
			}
			loc := string(c.Response.Header.Peek("Location"))
			if c.Response.StatusCode() == 400 {
				continue // a Host the edge would have refused
			}
			for i := 0; i < len(loc); i++ {
				if b := loc[i]; b <= ' ' || b >= 0x7f || b == '#' || b == '\\' {
					t.Fatalf("Location %q holds byte %q", loc, b)
				}
			}
			if !strings.HasPrefix(loc, tc.prefix) {
				t.Fatalf("Location %q does not start with %q", loc, tc.prefix)
			}
			if tc.prefix == "/" && strings.HasPrefix(loc, "//") {
				t.Fatalf("relative Location %q names a host", loc)
			}
			if tc.prefix == "https://" && strings.ContainsAny(strings.SplitN(loc[len("https://"):], "/", 2)[0], "@?#") {
				t.Fatalf("Location %q: the host part changed shape", loc)
			}
		}
	})
}

// FuzzTemplate: whatever template the config build accepts, a hostile path, query and
// parameter never choose the host of the Location, and a relative one never names a host.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"https://{host}{path}", "/new/{id}", "{scheme}://a.example:8443/{id}?x={query}",
		"{path}", "http://{hostname}", "https://a.example?{id}", "HTTPS://{host}/{id}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, to string) {
		tpl, err := parseTemplate(to)
		if err != nil {
			return
		}
		fl := &Filter{tpl: tpl, status: 307, keepQuery: !tpl.queryVar}
		c := newCtx(t, "GET / HTTP/1.1\nHost: h.example\n", "id=@evil.example/")
		c.URI().SetPath("//evil.example/x")
		c.URI().SetQueryString("u=@evil.example")
		fl.OnRequest(c)
		loc := string(c.Response.Header.Peek("Location"))
		if strings.ContainsAny(loc, "\r\n\x00 #\\") {
			t.Fatalf("%q: Location %q", to, loc)
		}
		if tpl.relative {
			if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
				t.Fatalf("%q: relative Location %q", to, loc)
			}
			return
		}
		_, rest, ok := strings.Cut(loc, "://")
		if !ok {
			t.Fatalf("%q: Location %q has no scheme", to, loc)
		}
		if end := strings.IndexAny(rest, "/?"); end >= 0 {
			rest = rest[:end]
		}
		if strings.Contains(rest, "evil") || strings.Contains(rest, "@") {
			t.Fatalf("%q: the request chose the host of %q", to, loc)
		}
	})
}
