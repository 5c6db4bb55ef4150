package headers

import (
	"os"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

// build runs the factory on a config written in YAML, the way the engine does.
func build(tb testing.TB, yamlCfg string) (filter.Filter, error) {
	return filtertest.NewFilter(tb, New, Name, yamlCfg)
}

func mustBuild(tb testing.TB, yamlCfg string) filter.Filter {
	return filtertest.MustNewFilter(tb, New, Name, yamlCfg)
}

// values lists every value of the named request or response header, in order.
func values(all [][]byte) string {
	var s []string
	for _, v := range all {
		s = append(s, string(v))
	}
	return strings.Join(s, ",")
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

func TestOnRequest(t *testing.T) {
	const req = "GET /a HTTP/1.1\nHost: h\nX-A: 1\nX-A: 2\nX-B: b\n"
	tests := []struct {
		name string
		cfg  string
		want map[string]string // header -> comma-joined values; "" means absent
	}{
		{"set replaces every value", `{request: {set: {X-A: "9"}}}`, map[string]string{"X-A": "9", "X-B": "b"}},
		{"set new header", `{request: {set: {X-New: v}}}`, map[string]string{"X-New": "v", "X-A": "1,2"}},
		{"add appends", `{request: {add: {X-A: "3"}}}`, map[string]string{"X-A": "1,2,3"}},
		{"add list", `{request: {add: {X-C: [p, q]}}}`, map[string]string{"X-C": "p,q"}},
		{"remove deletes every value", `{request: {remove: [X-A]}}`, map[string]string{"X-A": "", "X-B": "b"}},
		{"remove any case", `{request: {remove: [x-a]}}`, map[string]string{"X-A": ""}},
		{"remove then set", `{request: {remove: [X-B], set: {X-B: new}}}`, map[string]string{"X-B": "new"}},
		{"set then add", `{request: {set: {X-A: s}, add: {X-A: a}}}`, map[string]string{"X-A": "s,a"}},
		{"set host", `{request: {set: {Host: upstream.internal}}}`, map[string]string{"Host": "upstream.internal"}},
		{"empty value", `{request: {set: {X-Empty: ""}}}`, map[string]string{"X-Empty": ""}},
		{"response only leaves request alone", `{response: {set: {X-A: r}}}`, map[string]string{"X-A": "1,2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, req)
			if got := f.OnRequest(c); got != filter.Continue {
				t.Fatalf("OnRequest = %v, want Continue", got)
			}
			for h, want := range tt.want {
				if got := values(c.Request.Header.PeekAll(h)); got != want {
					t.Errorf("%s: got %q, want %q", h, got, want)
				}
			}
		})
	}
}

func TestOnResponse(t *testing.T) {
	tests := []struct {
		name string
		cfg  string
		want map[string]string
	}{
		{"set", `{response: {set: {Cache-Control: no-store}}}`, map[string]string{"Cache-Control": "no-store", "Vary": "a,b"}},
		{"remove server", `{response: {remove: [Server]}}`, map[string]string{"Server": ""}},
		{"remove all values", `{response: {remove: [Vary]}}`, map[string]string{"Vary": ""}},
		{"add", `{response: {add: {Vary: c}}}`, map[string]string{"Vary": "a,b,c"}},
		{"set content type", `{response: {set: {Content-Type: text/html}}}`, map[string]string{"Content-Type": "text/html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
			if err := filtertest.ReadResponse("HTTP/1.1 200 OK\nServer: s\nVary: a\nVary: b\nCache-Control: public\n", &c.Response); err != nil {
				t.Fatal(err)
			}
			f.OnResponse(c)
			for h, want := range tt.want {
				if got := values(c.Response.Header.PeekAll(h)); got != want {
					t.Errorf("%s: got %q, want %q", h, got, want)
				}
			}
		})
	}
}

// TestOrder checks that edits follow canonical name order, not config order or map order.
func TestOrder(t *testing.T) {
	f := mustBuild(t, `{request: {add: {x-c: "3", X-A: "1", x-b: "2", X-E: "5", x-d: "4"}}}`)
	for i := 0; i < 20; i++ { // map iteration order changes between builds; the result must not
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
		f.OnRequest(c)
		var got []string
		for k := range c.Request.Header.All() {
			if strings.HasPrefix(string(k), "X-") {
				got = append(got, string(k))
			}
		}
		if g, want := strings.Join(got, " "), "X-A X-B X-C X-D X-E"; g != want {
			t.Fatalf("order: got %s, want %s", g, want)
		}
		f = mustBuild(t, `{request: {add: {x-c: "3", X-A: "1", x-b: "2", X-E: "5", x-d: "4"}}}`)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, cfg, want string
	}{
		{"nothing", `{}`, "nothing to do"},
		{"empty phases", `{request: {}, response: {}}`, "nothing to do"},
		{"unknown key", `{request: {sett: {X-A: b}}}`, "sett"},
		{"unknown phase", `{requests: {set: {X-A: b}}}`, "requests"},
		{"empty name", `{request: {remove: [""]}}`, "empty header name"},
		{"space in name", `{request: {set: {"X A": b}}}`, "not allowed in a token"},
		{"colon in name", `{request: {set: {"X:A": b}}}`, "not allowed in a token"},
		{"non-ascii name", `{response: {add: {"X-Ä": b}}}`, "not allowed in a token"},
		{"CR in value", `{request: {set: {X-A: "a\rb"}}}`, "CR, LF or NUL"},
		{"LF in value", `{request: {add: {X-A: ["ok", "a\nb"]}}}`, "CR, LF or NUL"},
		{"NUL in value", `{response: {set: {X-A: "a\0b"}}}`, "CR, LF or NUL"},
		{"control in value", `{response: {set: {X-A: "a\x01b"}}}`, "control byte"},
		{"number value", `{request: {set: {X-A: 2}}}`, "quote it"},
		{"bool value", `{request: {set: {X-A: true}}}`, "quote it"},
		{"null value", `{request: {set: {X-A: }}}`, "missing value"},
		{"list under set", `{request: {set: {X-A: [a, b]}}}`, "only allowed under add"},
		{"empty list", `{request: {add: {X-A: []}}}`, "empty list"},
		{"duplicate spelling", `{request: {set: {X-A: a, x-a: b}}}`, "given twice"},
		{"duplicate remove", `{request: {remove: [X-A, x-a]}}`, "listed twice"},
		{"framing header", `{request: {set: {Content-Length: "5"}}}`, "managed by the proxy"},
		{"hop-by-hop header", `{response: {remove: [connection]}}`, "managed by the proxy"},
		{"te", `{request: {add: {TE: trailers}}}`, "managed by the proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestConfigErrorsQuoteNoValue: header values are often credentials, and errors reach the log
// and the admin API, so no error quotes one.
func TestConfigErrorsQuoteNoValue(t *testing.T) {
	for _, cfg := range []string{
		`{request: {set: {Authorization: "Bearer upstream-s3cret\n"}}}`,
		`{request: {add: {X-Api-Key: ["ok-upstream-s3cret", "upstream-s3cret\u0001"]}}}`,
		`{response: {set: {Set-Cookie: "upstream-s3cret\r"}}}`,
		`{request: {add: {X-Api-Key: [upstream-s3cret, 12345678]}}}`,
		`{request: {set: {X-Api-Key: 12345678}}}`,
	} {
		_, err := build(t, cfg)
		if err == nil {
			t.Errorf("%s: built", cfg)
			continue
		}
		for _, secret := range []string{"upstream-s3cret", "12345678"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error quotes the value: %v", cfg, err)
			}
		}
	}
}

// TestPipeline runs two headers filters: request edits apply in route order, response edits in
// reverse, so the first filter has the last word on the response.
func TestPipeline(t *testing.T) {
	first := mustBuild(t, `{request: {set: {X-Stage: first}}, response: {set: {X-Stage: first}}}`)
	second := mustBuild(t, `{request: {add: {X-Stage: second}}, response: {set: {X-Stage: second}, add: {X-Seen: "yes"}}}`)
	p := filter.NewPipeline([]filter.Filter{first, second}, []string{"headers", "headers"})
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nX-Stage: client\n")
	var upstream string
	p.Run(c, func(c *filter.Ctx) { upstream = values(c.Request.Header.PeekAll("X-Stage")) })
	if want := "first,second"; upstream != want {
		t.Errorf("upstream X-Stage: got %q, want %q", upstream, want)
	}
	if got, want := values(c.Response.Header.PeekAll("X-Stage")), "first"; got != want {
		t.Errorf("response X-Stage: got %q, want %q", got, want)
	}
	if got, want := string(c.Response.Header.Peek("X-Seen")), "yes"; got != want {
		t.Errorf("response X-Seen: got %q, want %q", got, want)
	}
}

const allocCfg = `{request: {set: {X-Hello: world, Host: up}, add: {X-Tag: a}, remove: [X-Internal]},
  response: {set: {Cache-Control: no-store}, add: {Vary: Origin}, remove: [Server]}}`

func TestZeroAllocs(t *testing.T) {
	f := mustBuild(t, allocCfg)
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nX-Internal: 1\n")
	allocs := testing.AllocsPerRun(200, func() {
		f.OnRequest(c)
		f.OnResponse(c)
		// Undo the adds so the header does not grow run after run.
		c.Request.Header.Del("X-Tag")
		c.Response.Header.Del("Vary")
	})
	if allocs != 0 {
		t.Fatalf("OnRequest+OnResponse allocate %v times per request, want 0", allocs)
	}
}

func BenchmarkHeaders(b *testing.B) {
	f := mustBuild(b, allocCfg)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\nX-Internal: 1\nUser-Agent: bench\nAccept: */*\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
		c.Request.Header.Del("X-Tag")
		c.Response.Header.Del("Vary")
	}
}
