package cors

import (
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func mustBuild(tb testing.TB, yamlCfg string) filter.Filter {
	return filtertest.MustNewFilter(tb, New, Name, yamlCfg)
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// run plays raw through a pipeline of the filter in front of an upstream answering with the
// given response head (none: 200 with no headers), and reports whether the upstream was reached.
func run(t testing.TB, f filter.Filter, raw, upstream string) (*filter.Ctx, bool) {
	t.Helper()
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	c := filtertest.NewCtx(t, raw)
	reached := false
	p.Run(c, func(c *filter.Ctx) {
		reached = true
		if upstream != "" {
			if err := filtertest.ReadResponse(upstream, &c.Response); err != nil {
				t.Fatal(err)
			}
		} else {
			c.SetStatusCode(200)
		}
	})
	return c, reached
}

const (
	listCfg = `{allow_origins: ["https://app.example", "https://*.example.com", "http://localhost:3000"],
	  allow_headers: [Content-Type, Authorization], expose_headers: [X-Request-Id], allow_credentials: true, max_age: 10m}`
	anyCfg = `{allow_origins: ["*"], allow_methods: [GET, POST], max_age: 1h}`
)

func preflight(origin string) string {
	return "OPTIONS /v1/orders HTTP/1.1\nHost: api.example\nOrigin: " + origin +
		"\nAccess-Control-Request-Method: PUT\nAccess-Control-Request-Headers: content-type\n"
}

func simple(origin string) string {
	return "GET /v1/orders HTTP/1.1\nHost: api.example\nOrigin: " + origin + "\n"
}

func TestExchanges(t *testing.T) {
	type want struct {
		reached bool
		status  int
		headers map[string]string // "" means absent
	}
	none := map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": "",
		"Access-Control-Allow-Methods": "", "Access-Control-Allow-Headers": "", "Access-Control-Expose-Headers": ""}
	with := func(extra map[string]string) map[string]string { return extra }
	denyWith := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range none {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name     string
		cfg      string
		req      string
		upstream string
		want     want
	}{
		{"preflight, exact origin", listCfg, preflight("https://app.example"), "", want{false, 204, with(map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, HEAD, POST, PUT, PATCH, DELETE",
			"Access-Control-Allow-Headers":     "Content-Type, Authorization",
			"Access-Control-Max-Age":           "600",
			"Vary":                             "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		})}},
		{"preflight, origin case ignored and echoed as sent", listCfg, preflight("HTTPS://App.Example"), "", want{false, 204, with(map[string]string{
			"Access-Control-Allow-Origin": "HTTPS://App.Example",
		})}},
		{"preflight, one-label pattern", listCfg, preflight("https://shop.example.com"), "", want{false, 204, with(map[string]string{
			"Access-Control-Allow-Origin": "https://shop.example.com",
		})}},
		{"preflight, explicit port", listCfg, preflight("http://localhost:3000"), "", want{false, 204, with(map[string]string{
			"Access-Control-Allow-Origin": "http://localhost:3000",
		})}},
		{"preflight, disallowed origin", listCfg, preflight("https://evil.example"), "", want{false, 403, denyWith(map[string]string{
			"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		})}},
		{"preflight, two labels under a pattern", listCfg, preflight("https://a.b.example.com"), "", want{false, 403, none}},
		{"preflight, pattern apex", listCfg, preflight("https://example.com"), "", want{false, 403, none}},
		{"preflight, pattern empty label", listCfg, preflight("https://.example.com"), "", want{false, 403, none}},
		{"preflight, pattern wrong scheme", listCfg, preflight("http://shop.example.com"), "", want{false, 403, none}},
		{"preflight, pattern wrong port", listCfg, preflight("https://shop.example.com:8443"), "", want{false, 403, none}},
		{"preflight, suffix attack", listCfg, preflight("https://shop.example.com.evil.net"), "", want{false, 403, none}},
		{"preflight, prefix attack", listCfg, preflight("https://evilapp.example"), "", want{false, 403, none}},
		{"preflight, exact origin with path", listCfg, preflight("https://app.example/x"), "", want{false, 403, none}},
		{"preflight, exact origin with other port", listCfg, preflight("https://app.example:8443"), "", want{false, 403, none}},
		{"preflight, underscore label", listCfg, preflight("https://a_b.example.com"), "", want{false, 403, none}},
		{"preflight, null origin", listCfg, preflight("null"), "", want{false, 403, none}},
		{"preflight, two Origin fields", listCfg,
			"OPTIONS / HTTP/1.1\nHost: h\nOrigin: https://app.example\nOrigin: https://evil.example\nAccess-Control-Request-Method: GET\n",
			"", want{false, 403, none}},
		{"preflight, any origin", anyCfg, preflight("https://whoever.test"), "", want{false, 204, with(map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, POST",
			"Access-Control-Max-Age":       "3600",
			"Vary":                         "Access-Control-Request-Method, Access-Control-Request-Headers",
		})}},
		{"preflight, any origin takes null", anyCfg, preflight("null"), "", want{false, 204, with(map[string]string{
			"Access-Control-Allow-Origin": "*",
		})}},
		{"preflight, reflected headers", `{allow_origins: ["https://app.example"], allow_headers: ["*"]}`,
			preflight("https://app.example"), "", want{false, 204, with(map[string]string{
				"Access-Control-Allow-Origin":  "https://app.example",
				"Access-Control-Allow-Headers": "content-type",
				"Access-Control-Max-Age":       "",
			})}},
		{"OPTIONS without request method is no preflight", listCfg,
			"OPTIONS /v1 HTTP/1.1\nHost: h\nOrigin: https://app.example\n", "", want{true, 200, with(map[string]string{
				"Access-Control-Allow-Origin": "https://app.example",
				"Vary":                        "Origin",
			})}},
		{"OPTIONS with request method but no Origin goes upstream", listCfg,
			"OPTIONS /v1 HTTP/1.1\nHost: h\nAccess-Control-Request-Method: GET\n", "", want{true, 200, denyWith(map[string]string{"Vary": "Origin"})}},
		{"simple request, allowed", listCfg, simple("https://app.example"), "", want{true, 200, with(map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "X-Request-Id",
			"Access-Control-Max-Age":           "",
			"Vary":                             "Origin",
		})}},
		{"simple request, disallowed is forwarded without CORS headers", listCfg, simple("https://evil.example"), "",
			want{true, 200, denyWith(map[string]string{"Vary": "Origin"})}},
		{"simple request, no Origin", listCfg, "GET / HTTP/1.1\nHost: h\n", "", want{true, 200, denyWith(map[string]string{"Vary": "Origin"})}},
		{"simple request, any origin has no Vary", anyCfg, simple("https://x.test"), "", want{true, 200, with(map[string]string{
			"Access-Control-Allow-Origin": "*", "Vary": ""})}},
		{"upstream CORS headers replaced", listCfg, simple("https://app.example"),
			"HTTP/1.1 200 OK\nAccess-Control-Allow-Origin: *\nAccess-Control-Allow-Methods: TRACE\nVary: Accept-Encoding\n",
			want{true, 200, with(map[string]string{
				"Access-Control-Allow-Origin":      "https://app.example",
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers":    "X-Request-Id",
				"Vary":                             "Accept-Encoding, Origin",
			})}},
		{"upstream CORS headers removed for a disallowed origin", listCfg, simple("https://evil.example"),
			"HTTP/1.1 200 OK\nAccess-Control-Allow-Origin: https://evil.example\nAccess-Control-Allow-Credentials: true\nVary: origin\n",
			want{true, 200, denyWith(map[string]string{"Vary": "origin"})}},
		{"upstream Vary star kept", listCfg, simple("https://app.example"), "HTTP/1.1 200 OK\nVary: *\n",
			want{true, 200, with(map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Vary": "*"})}},
		{"several upstream Vary fields merged", listCfg, simple("https://app.example"),
			"HTTP/1.1 200 OK\nVary: Accept\nVary: Accept-Language\n",
			want{true, 200, with(map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Vary": "Accept, Accept-Language, Origin"})}},
		{"upstream error gets CORS headers too", listCfg, simple("https://app.example"), "HTTP/1.1 500 Internal Server Error\n",
			want{true, 500, with(map[string]string{"Access-Control-Allow-Origin": "https://app.example"})}},
		{"overlong origin", listCfg, simple("https://" + strings.Repeat("a", 400) + ".example.com"), "",
			want{true, 200, denyWith(map[string]string{"Vary": "Origin"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, reached := run(t, mustBuild(t, tt.cfg), tt.req, tt.upstream)
			if reached != tt.want.reached {
				t.Fatalf("upstream reached %v, want %v", reached, tt.want.reached)
			}
			if got := c.Response.StatusCode(); got != tt.want.status {
				t.Errorf("status %d, want %d", got, tt.want.status)
			}
			for k, w := range tt.want.headers {
				all := c.Response.Header.PeekAll(k)
				var got []string
				for _, v := range all {
					got = append(got, string(v))
				}
				switch {
				case w == "" && len(got) > 0:
					t.Errorf("%s: got %q, want none", k, got)
				case w != "" && (len(got) != 1 || got[0] != w):
					t.Errorf("%s: got %q, want %q", k, got, w)
				}
			}
		})
	}
}

// TestLaterRejectionGetsCORS checks that a local answer of a later filter (an auth failure)
// carries the CORS headers, so the page can read why it failed.
func TestLaterRejectionGetsCORS(t *testing.T) {
	p := filter.NewPipeline([]filter.Filter{mustBuild(t, listCfg), reject{}}, []string{Name, "reject"})
	c := filtertest.NewCtx(t, simple("https://app.example"))
	reached := false
	p.Run(c, func(*filter.Ctx) { reached = true })
	if reached {
		t.Fatal("upstream reached")
	}
	if got := string(c.Response.Header.Peek("Access-Control-Allow-Origin")); got != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin %q", got)
	}
}

type reject struct{}

func (reject) OnRequest(c *filter.Ctx) filter.Status { return c.Reply(401, nil) }
func (reject) OnResponse(*filter.Ctx)                {}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{}`, "allow_origins is required"},
		{`{allow_origins: ["*"], allow_credentials: true}`, "cannot be used with allow_credentials"},
		{`{allow_origins: ["*", "https://a.example"]}`, "must be the only entry"},
		{`{allow_origins: ["null"]}`, "sandboxed iframe"},
		{`{allow_origins: ["app.example"]}`, "not an origin"},
		{`{allow_origins: ["https://app.example/"]}`, "write https://app.example"},
		{`{allow_origins: ["https://app.example/path"]}`, "no path"},
		{`{allow_origins: ["https://user@app.example"]}`, "no path, query, fragment or user"},
		{`{allow_origins: ["https://a*.example.com"]}`, "whole first label"},
		{`{allow_origins: ["https://*.*.example.com"]}`, "whole first label"},
		{`{allow_origins: ["https://api.*.example.com"]}`, "whole first label"},
		{`{allow_origins: ["https://*"]}`, "whole first label"},
		{`{allow_origins: ["https://app.example:0"]}`, "invalid port"},
		{`{allow_origins: ["https://app.example:99999"]}`, "invalid port"},
		{`{allow_origins: ["https://app.example:"]}`, "invalid port"},
		{`{allow_origins: ["https://app.example:08080"]}`, "invalid port"},
		{`{allow_origins: ["https://[::1"]}`, "unterminated"},
		{`{allow_origins: ["https://*.[::1]"]}`, "cannot precede an IP literal"},
		{`{allow_origins: ["1ttp://app.example"]}`, "invalid scheme"},
		{`{allow_origins: ["https://a.example", "HTTPS://A.example:443"]}`, "given twice"},
		{`{allow_origins: ["https://a.example"], allow_credentials: true, allow_methods: ["*"]}`, "not a wildcard for credentialed"},
		{`{allow_origins: ["https://a.example"], allow_credentials: true, expose_headers: ["*"]}`, "not a wildcard for credentialed"},
		{`{allow_origins: ["https://a.example"], allow_headers: ["X A"]}`, "not allowed in a token"},
		{`{allow_origins: ["https://a.example"], allow_headers: [X-A, x-a]}`, "given twice"},
		{`{allow_origins: ["https://a.example"], allow_methods: [get, GET]}`, "given twice"},
		{`{allow_origins: ["https://a.example"], max_age: -1s}`, "negative"},
		{`{allow_origins: ["https://a.example"], max_age: 1500ms}`, "whole number of seconds"},
		{`{allow_origins: ["https://a.example"], max_age: 600}`, "no unit"},
		{`{allow_origins: ["https://a.example"], origins: []}`, "origins"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := filtertest.NewFilter(t, New, Name, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseOriginNormalForm(t *testing.T) {
	tests := []struct{ in, exact, prefix, suffix string }{
		{"HTTPS://App.Example", "https://app.example", "", ""},
		{"https://app.example:443", "https://app.example", "", ""},
		{"http://app.example:80", "http://app.example", "", ""},
		{"http://app.example:443", "http://app.example:443", "", ""},
		{"https://[2001:DB8::1]:8443", "https://[2001:db8::1]:8443", "", ""},
		{"https://192.0.2.1", "https://192.0.2.1", "", ""},
		{"capacitor://localhost", "capacitor://localhost", "", ""},
		{"https://*.Example.com:443", "", "https://", ".example.com"},
		{"http://*.example.com:8080", "", "http://", ".example.com:8080"},
	}
	for _, tt := range tests {
		exact, pat, err := parseOrigin(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if exact != tt.exact {
			t.Errorf("%s: exact %q, want %q", tt.in, exact, tt.exact)
		}
		if (pat == nil) != (tt.prefix == "") || pat != nil && (pat.prefix != tt.prefix || pat.suffix != tt.suffix) {
			t.Errorf("%s: pattern %+v, want %q %q", tt.in, pat, tt.prefix, tt.suffix)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, tt := range []struct{ name, cfg, req, upstream string }{
		{"preflight", listCfg, preflight("https://app.example"), ""},
		{"preflight pattern", listCfg, preflight("https://shop.example.com"), ""},
		{"preflight reflected", `{allow_origins: ["https://app.example"], allow_headers: ["*"]}`, preflight("https://app.example"), ""},
		{"preflight denied", listCfg, preflight("https://evil.example"), ""},
		{"simple", listCfg, simple("https://app.example"), "HTTP/1.1 200 OK\nVary: Accept-Encoding\nAccess-Control-Allow-Origin: *\n"},
		{"simple any", anyCfg, simple("https://app.example"), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, tt.req)
			var up fasthttp.ResponseHeader
			if tt.upstream != "" {
				var r fasthttp.Response
				if err := filtertest.ReadResponse(tt.upstream, &r); err != nil {
					t.Fatal(err)
				}
				r.Header.CopyTo(&up)
			}
			allocs := testing.AllocsPerRun(200, func() {
				up.CopyTo(&c.Response.Header)
				if f.OnRequest(c) == filter.Continue {
					f.OnResponse(c)
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per request, want 0", allocs)
			}
		})
	}
}

func BenchmarkCORS(b *testing.B) {
	for _, tt := range []struct{ name, req string }{
		{"preflight", preflight("https://app.example")},
		{"simple", simple("https://app.example")},
		{"simple-pattern", simple("https://shop.example.com")},
	} {
		b.Run(tt.name, func(b *testing.B) {
			f := mustBuild(b, listCfg)
			c := filtertest.NewCtx(b, tt.req)
			b.ReportAllocs()
			for b.Loop() {
				c.Response.Header.Reset()
				if f.OnRequest(c) == filter.Continue {
					f.OnResponse(c)
				}
			}
		})
	}
}

// FuzzOrigin checks the matcher against a plain reading of the policy on any Origin value: an
// allowed value, lower-cased, is one of the exact origins or one label under a pattern.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{"https://app.example", "HTTPS://APP.EXAMPLE", "https://a.example.com", "https://a.b.example.com",
		"https://.example.com", "https://example.com", "null", "", "https://a.example.com:443", "https://xn--bcher-kva.example.com"} {
		f.Add(s)
	}
	flt := mustBuild(f, listCfg).(*Filter)
	f.Fuzz(func(t *testing.T, o string) {
		got := len(o) <= maxOrigin && flt.allowed([]byte(o))
		l := strings.ToLower(o)
		want := false
		if _, ok := flt.exact[l]; ok {
			want = true
		}
		if rest, ok := strings.CutPrefix(l, "https://"); ok {
			if label, ok := strings.CutSuffix(rest, ".example.com"); ok && label != "" && len(label) <= 63 &&
				strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" {
				want = true
			}
		}
		if got != want && len(o) <= maxOrigin {
			t.Fatalf("allowed(%q) = %v, want %v", o, got, want)
		}
	})
}

// FuzzParseOrigin checks that an accepted config origin is in normal form (parsing it again
// gives it back) and is allowed by a policy holding it.
func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"https://app.example", "https://*.example.com", "http://[::1]:8080", "https://a.example:443", "null", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exact, pat, err := parseOrigin(s)
		if err != nil || pat != nil {
			return
		}
		again, _, err := parseOrigin(exact)
		if err != nil || again != exact {
			t.Fatalf("%q: normal form %q reparses as %q, %v", s, exact, again, err)
		}
		if len(exact) <= maxOrigin {
			flt := &Filter{exact: map[string]struct{}{exact: {}}}
			if !flt.allowed([]byte(exact)) {
				t.Fatalf("%q: normal form %q not allowed by itself", s, exact)
			}
		}
	})
}
