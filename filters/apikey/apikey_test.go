package apikey

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

const demoKey = "weir-demo-key"

// testConsumers are alice (demoKey, group admins), bob (another key) and guest (no key).
func testConsumers(tb testing.TB) *filter.Consumers {
	tb.Helper()
	cs, err := filter.NewConsumers([]*filter.Consumer{
		{Name: "alice", Groups: []string{"admins"}, APIKeys: [][sha256.Size]byte{sha256.Sum256([]byte(demoKey))}},
		{Name: "bob", APIKeys: [][sha256.Size]byte{sha256.Sum256([]byte("bob-key"))}},
		{Name: "guest"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

func build(tb testing.TB, yamlCfg string) (filter.Filter, error) {
	tb.Helper()
	tree, err := filtertest.ParseYAML(yamlCfg)
	if err != nil {
		tb.Fatal(err)
	}
	env := filter.Env{Route: "test", Filter: Name, Consumers: testConsumers(tb)}
	return New(env, func(v any) error { return config.DecodeStrict(tree, v) })
}

func mustBuild(tb testing.TB, yamlCfg string) filter.Filter {
	tb.Helper()
	f, err := build(tb, yamlCfg)
	if err != nil {
		tb.Fatalf("build %s: %v", yamlCfg, err)
	}
	return f
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name, Consumers: testConsumers(t)})
}

func TestOnRequest(t *testing.T) {
	tests := []struct {
		name       string
		cfg        string
		req        string
		wantStatus int    // 0: continues
		wantWho    string // the consumer set
		wantReason string
		wantTarget string // the request target afterwards, when set
		wantHeader string // the key header's value afterwards ("" absent), checked when hiding
	}{
		{"header", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "\n", 0, "alice", "", "", ""},
		{"header any case", `{}`, "GET / HTTP/1.1\nHost: h\nx-api-KEY: bob-key\n", 0, "bob", "", "", ""},
		{"missing", `{}`, "GET / HTTP/1.1\nHost: h\n", 401, "", "no API key", "", ""},
		{"empty", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: \n", 401, "", "no API key", "", ""},
		{"unknown", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: nope\n", 401, "", "unknown API key", "", ""},
		{"key with a trailing byte", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "x\n", 401, "", "unknown API key", "", ""},
		{"key case matters", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + strings.ToUpper(demoKey) + "\n", 401, "", "unknown API key", "", ""},
		{"oversized", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: big\n", 401, "", "unknown API key", "", ""},
		{"twice", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "\nX-API-Key: bob-key\n", 401, "", "more than once", "", ""},
		{"twice, same key", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "\nX-API-Key: " + demoKey + "\n", 401, "", "more than once", "", ""},
		{"underscore spelling too", `{}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "\nX_API_KEY: bob-key\n", 401, "", "more than once", "", ""},
		{"underscore spelling alone", `{}`, "GET / HTTP/1.1\nHost: h\nX_Api_Key: " + demoKey + "\n", 0, "alice", "", "", ""},
		{"query not configured", `{}`, "GET /?apikey=" + demoKey + " HTTP/1.1\nHost: h\n", 401, "", "no API key", "", ""},
		{"query", `{query: apikey}`, "GET /?apikey=" + demoKey + " HTTP/1.1\nHost: h\n", 0, "alice", "", "/?apikey=" + demoKey, ""},
		{"query only ignores the header", `{query: apikey}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "\n", 401, "", "no API key", "", ""},
		{"query percent-encoded", `{query: apikey}`, "GET /?api%6bey=weir%2Ddemo%2dkey HTTP/1.1\nHost: h\n", 0, "alice", "", "", ""},
		{"query twice", `{query: apikey}`, "GET /?apikey=" + demoKey + "&apikey=" + demoKey + " HTTP/1.1\nHost: h\n", 401, "", "more than once", "", ""},
		{"query name case matters", `{query: apikey}`, "GET /?APIKEY=" + demoKey + " HTTP/1.1\nHost: h\n", 401, "", "no API key", "", ""},
		{"header before query", `{header: X-Key, query: k}`, "GET /?k=nope HTTP/1.1\nHost: h\nX-Key: bob-key\n", 0, "bob", "", "", ""},
		{"query when no header", `{header: X-Key, query: k}`, "GET /?k=bob-key HTTP/1.1\nHost: h\n", 0, "bob", "", "", ""},
		{"hide header", `{hide_credentials: true}`, "GET /a?x=1 HTTP/1.1\nHost: h\nX-API-Key: " + demoKey + "\n", 0, "alice", "", "/a?x=1", ""},
		{"hide query keeps the rest byte for byte", `{query: k, hide_credentials: true}`,
			"GET /a?x=%2F+y&k=" + demoKey + "&z HTTP/1.1\nHost: h\n", 0, "alice", "", "/a?x=%2F+y&z", ""},
		{"hide the only parameter", `{query: k, hide_credentials: true}`, "GET /a?k=" + demoKey + " HTTP/1.1\nHost: h\n", 0, "alice", "", "/a", ""},
		{"hide encoded parameter name", `{query: api_key, hide_credentials: true}`, "GET /a?api%5Fkey=" + demoKey + "&b=1 HTTP/1.1\nHost: h\n", 0, "alice", "", "/a?b=1", ""},
		{"anonymous without a key", `{anonymous: guest}`, "GET / HTTP/1.1\nHost: h\n", 0, "guest", "", "", ""},
		{"anonymous with a wrong key", `{anonymous: guest}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: nope\n", 401, "", "unknown API key", "", ""},
		{"anonymous with a good key", `{anonymous: guest}`, "GET / HTTP/1.1\nHost: h\nX-API-Key: bob-key\n", 0, "bob", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, tt.req)
			if tt.name == "oversized" { // past the test parser's buffer; set after parsing
				c.Request.Header.Set("X-API-Key", strings.Repeat("k", maxKeyLen+1))
			}
			got := f.OnRequest(c)
			if tt.wantStatus == 0 {
				if got != filter.Continue {
					t.Fatalf("OnRequest = Stop (%d, %v), want Continue", c.Response.StatusCode(), c.Err())
				}
			} else {
				if got != filter.Stop || c.Response.StatusCode() != tt.wantStatus {
					t.Fatalf("OnRequest = %v with status %d, want Stop with %d", got, c.Response.StatusCode(), tt.wantStatus)
				}
				if w := string(c.Response.Header.Peek("WWW-Authenticate")); w != `Key realm="weir"` {
					t.Errorf("WWW-Authenticate = %q", w)
				}
				if b := string(c.Response.Body()); b != filter.ErrorBody(401) {
					t.Errorf("body = %q, want %q", b, filter.ErrorBody(401))
				}
				if c.Err() == nil || !strings.Contains(c.Err().Error(), tt.wantReason) {
					t.Errorf("reason = %v, want one containing %q", c.Err(), tt.wantReason)
				}
				if strings.Contains(c.Err().Error(), demoKey) || strings.Contains(c.Err().Error(), "nope") {
					t.Errorf("the reason quotes the key: %v", c.Err())
				}
			}
			who := ""
			if k := c.Consumer(); k != nil {
				who = k.Name
			}
			if who != tt.wantWho {
				t.Errorf("consumer = %q, want %q", who, tt.wantWho)
			}
			if tt.wantTarget != "" {
				if got := filtertest.Target(&c.Request); got != tt.wantTarget {
					t.Errorf("target = %q, want %q", got, tt.wantTarget)
				}
				// What the proxy sends: the URI's request-URI.
				if got := string(c.Request.URI().RequestURI()); got != tt.wantTarget {
					t.Errorf("request URI = %q, want %q", got, tt.wantTarget)
				}
				if tt.wantHeader == "" && len(c.Request.Header.Peek("X-API-Key")) > 0 {
					t.Errorf("X-API-Key still present after hiding")
				}
			}
		})
	}
}

// TestHideRemovesEverySpelling checks that hiding leaves no spelling of the header behind.
func TestHideRemovesEverySpelling(t *testing.T) {
	f := mustBuild(t, `{hide_credentials: true}`)
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nx-api-key: "+demoKey+"\n")
	if f.OnRequest(c) != filter.Continue {
		t.Fatal("refused")
	}
	for k := range c.Request.Header.All() {
		if strings.EqualFold(strings.ReplaceAll(string(k), "_", "-"), "x-api-key") {
			t.Errorf("field %s left", k)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{header: "X Key"}`, "header"},
		{`{header: Content-Length}`, "managed by the proxy"},
		{`{header: Host}`, "header"},
		{`{query: "a=b"}`, "not a plain parameter name"},
		{`{realm: 'a"b'}`, "realm"},
		{`{anonymous: nobody}`, `consumer "nobody" is not declared`},
		{`{hide: true}`, `unknown key "hide"`},
		{`{hide_credentials: yes please}`, "hide_credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build(%s): got %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestRemoveParam(t *testing.T) {
	tests := []struct{ q, name, want string }{
		{"", "k", ""},
		{"k", "k", ""},
		{"k=1", "k", ""},
		{"a=1&k=2&b=3", "k", "a=1&b=3"},
		{"k=1&k=2&a", "k", "a"},
		{"a&&k=1&", "k", "a"},
		{"kk=1&k2=2", "k", "kk=1&k2=2"},
		{"%6B=1&a=%6B", "k", "a=%6B"},
		{"a+b=1&c", "a b", "c"},
		{"%zz=1&%=2", "%zz", "%=2"},
		{"k%=1", "k%", ""},
	}
	for _, tt := range tests {
		got, _ := RemoveParam([]byte(tt.q), []byte(tt.name))
		if string(got) != tt.want {
			t.Errorf("RemoveParam(%q, %q) = %q, want %q", tt.q, tt.name, got, tt.want)
		}
	}
}

// FuzzRemoveParam checks RemoveParam against fasthttp's own parsing of the query: afterwards
// no argument decodes to the name, and every other argument is kept, in order.
func FuzzRemoveParam(f *testing.F) {
	for _, s := range []string{"a=1&k=2", "k", "%6B=1", "a+b=&&k%", "k=1&k=2&k"} {
		f.Add(s, "k")
	}
	f.Fuzz(func(t *testing.T, q, name string) {
		if name == "" {
			return
		}
		var before, after fasthttp.Args
		before.Parse(q)
		out, removed := RemoveParam([]byte(q), []byte(name))
		after.ParseBytes(out)
		var want []string
		found := false
		for k, v := range before.All() {
			if string(k) == name {
				found = true
				continue
			}
			want = append(want, string(k)+"="+string(v))
		}
		if found != removed {
			t.Fatalf("RemoveParam(%q, %q) removed=%v, but fasthttp finds the name: %v", q, name, removed, found)
		}
		var got []string
		for k, v := range after.All() {
			if string(k) == name {
				t.Fatalf("RemoveParam(%q, %q) = %q still has the name", q, name, out)
			}
			got = append(got, string(k)+"="+string(v))
		}
		if strings.Join(got, "&") != strings.Join(want, "&") {
			t.Fatalf("RemoveParam(%q, %q) = %q: args %q, want %q", q, name, out, got, want)
		}
	})
}

// FuzzOnRequest throws arbitrary header values and query strings at the filter: it never
// panics, and it only continues as a consumer whose key was presented.
func FuzzOnRequest(f *testing.F) {
	f.Add(demoKey, "apikey="+demoKey)
	f.Add("", "apikey=%77eir-demo-key")
	f.Add("x", "apikey&apikey=")
	fl := mustBuild(f, `{query: apikey, hide_credentials: true}`)
	fh := mustBuild(f, `{header: X-Key, hide_credentials: true}`)
	f.Fuzz(func(t *testing.T, hv, q string) {
		for i, fl := range []filter.Filter{fl, fh} {
			var req fasthttp.Request
			req.Header.SetMethod("GET")
			req.Header.SetHost("h")
			req.SetRequestURI("/p?" + q)
			req.Header.Set("X-Key", hv)
			rc := &fasthttp.RequestCtx{}
			rc.Init(&req, nil, nil)
			c := &filter.Ctx{}
			c.Reset(rc, "fuzz")
			if fl.OnRequest(c) == filter.Continue {
				if k := c.Consumer(); k == nil || (k.Name != "alice" && k.Name != "bob") {
					t.Fatalf("continued as %v", k)
				}
				if i == 0 {
					// A hidden parameter must not survive in what the proxy sends.
					var a fasthttp.Args
					a.ParseBytes(c.Request.URI().QueryString())
					if a.Has("apikey") {
						t.Fatalf("apikey left in %q", c.Request.URI().RequestURI())
					}
				}
			}
		}
	})
}

const benchReq = "GET /orders?page=2 HTTP/1.1\nHost: api.example.com\nUser-Agent: bench\nAccept: */*\nX-API-Key: " + demoKey + "\n"

func TestZeroAllocs(t *testing.T) {
	for _, cfg := range []string{`{}`, `{query: apikey}`, `{header: X-Key, query: apikey}`} {
		f := mustBuild(t, cfg)
		req := benchReq
		if cfg != `{}` {
			req = "GET /orders?page=2&apikey=" + demoKey + " HTTP/1.1\nHost: api.example.com\n"
		}
		c := filtertest.NewCtx(t, req)
		allocs := testing.AllocsPerRun(200, func() {
			if f.OnRequest(c) != filter.Continue {
				t.Fatal("refused")
			}
			f.OnResponse(c)
		})
		if allocs != 0 {
			t.Errorf("%s: OnRequest allocates %v times per request, want 0", cfg, allocs)
		}
	}
}

func BenchmarkAPIKey(b *testing.B) {
	f := mustBuild(b, `{}`)
	c := filtertest.NewCtx(b, benchReq)
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}

func BenchmarkAPIKeyRefused(b *testing.B) {
	f := mustBuild(b, `{}`)
	c := filtertest.NewCtx(b, strings.Replace(benchReq, demoKey, "wrong-key", 1))
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
	}
}
