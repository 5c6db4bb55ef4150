// Package filtertest holds test helpers shared by the built-in filters: a filter built from a
// YAML config the way the engine builds it, a filter.Ctx built around a raw HTTP request, and a
// runner that executes every example of a README (each filter's README test calls it).
//
// It is imported by tests only; the gateway itself never links it.
package filtertest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
)

// NewFilter runs factory on a config written in YAML, the way the engine does: the subtree is
// decoded strictly. A YAML syntax error fails the test; a build error is returned.
func NewFilter(tb testing.TB, factory filter.Factory, name, yamlCfg string) (filter.Filter, error) {
	tb.Helper()
	tree, err := ParseYAML(yamlCfg)
	if err != nil {
		tb.Fatalf("parse %q: %v", yamlCfg, err)
	}
	return factory(filter.Env{Route: "test", Filter: name}, func(v any) error { return config.DecodeStrict(tree, v) })
}

// MustNewFilter is NewFilter, failing the test on a build error.
func MustNewFilter(tb testing.TB, factory filter.Factory, name, yamlCfg string) filter.Filter {
	tb.Helper()
	f, err := NewFilter(tb, factory, name, yamlCfg)
	if err != nil {
		tb.Fatalf("build %q: %v", yamlCfg, err)
	}
	return f
}

// DefaultClient is the client address of a Ctx from NewCtx: the peer's address, as the engine
// resolves it for a peer that is not a trusted proxy.
var DefaultClient = netip.MustParseAddr("192.0.2.1")

// NewCtx returns a Ctx for the raw HTTP request head in raw ("GET /a HTTP/1.1\nHost: x\n\n";
// bare newlines are accepted). It fails the test if raw does not parse. Its client address
// (Ctx.ClientIP) is DefaultClient.
func NewCtx(tb testing.TB, raw string) *filter.Ctx {
	tb.Helper()
	var req fasthttp.Request
	if err := ReadRequest(raw, &req); err != nil {
		tb.Fatalf("parse request %q: %v", raw, err)
	}
	rc := &fasthttp.RequestCtx{}
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}, nil)
	c := &filter.Ctx{}
	c.Reset(rc, "test")
	c.SetClientIP(DefaultClient)
	return c
}

// ReadRequest parses a raw request head into req.
func ReadRequest(raw string, req *fasthttp.Request) error {
	return req.Header.Read(bufio.NewReader(strings.NewReader(wire(raw))))
}

// ReadResponse parses a raw response head into resp.
func ReadResponse(raw string, resp *fasthttp.Response) error {
	return resp.Header.Read(bufio.NewReader(strings.NewReader(wire(raw))))
}

// wire turns README text (bare newlines, maybe no final blank line) into a request head.
func wire(raw string) string {
	raw = strings.TrimRight(strings.ReplaceAll(raw, "\r\n", "\n"), "\n")
	return strings.ReplaceAll(raw, "\n", "\r\n") + "\r\n\r\n"
}

// Build builds the filters listed in a route's filters list as written in YAML: a list of
// one-key maps (name: config) or bare names. Every name must be registered.
func Build(entries any) (*filter.Pipeline, error) { return BuildWith(entries, nil) }

// BuildWith is Build with the consumers the filters' Env hands them (auth filters).
func BuildWith(entries any, consumers *filter.Consumers) (*filter.Pipeline, error) {
	list, ok := entries.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of filters (- name: config), got %T", entries)
	}
	var fs []filter.Filter
	var names []string
	for i, e := range list {
		if name, ok := e.(string); ok {
			e = map[string]any{name: nil} // the bare-name shorthand
		}
		m, ok := e.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, fmt.Errorf("filter %d: want one name: config pair, got %v", i, e)
		}
		for name, sub := range m {
			factory, ok := filter.Lookup(name)
			if !ok {
				return nil, fmt.Errorf("filter %d: %q is not registered", i, name)
			}
			if sub == nil {
				sub = map[string]any{}
			}
			env := filter.Env{Route: "readme", Filter: name, Slot: i, Consumers: consumers}
			f, err := factory(env, func(v any) error { return config.DecodeStrict(sub, v) })
			if err != nil {
				return nil, fmt.Errorf("filter %d (%s): %w", i, name, err)
			}
			fs = append(fs, f)
			names = append(names, name)
		}
	}
	return filter.NewPipeline(fs, names), nil
}

// Example is one ```yaml block of a README's Examples section and the HTTP exchanges that
// follow it.
type Example struct {
	Line      int    // line of the opening fence in the README
	YAML      string // the block's text
	Exchanges []Exchange
}

// Exchange is a request and what the README says happens to it. Empty fields are not checked
// (an empty UpstreamResponse means the upstream answers 200 with no headers).
type Exchange struct {
	Line             int
	Client           string // the client address (Ctx.ClientIP): "```http request from 10.0.0.1"
	Request          string // ```http request: what the client sends
	UpstreamRequest  string // ```http upstream-request: what the upstream receives
	UpstreamResponse string // ```http upstream-response: what the upstream answers
	Response         string // ```http response: what the client receives
}

// Examples extracts the examples of the README at path: every fenced block under the
// "## Examples" heading (up to the next level-2 heading). A ```yaml block starts an example;
// ```http request starts an exchange of the latest example (```http request from 2001:db8::1
// sets the client address the edge resolved); ```http upstream-request,
// ```http upstream-response (a head, then optionally an empty line and a body) and
// ```http response complete that exchange.
func Examples(path string, src string) ([]Example, error) {
	lines := strings.Split(src, "\n")
	var out []Example
	in := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "## ") {
			in = strings.TrimSpace(l[3:]) == "Examples"
			continue
		}
		if !in || !strings.HasPrefix(l, "```") {
			continue
		}
		info := strings.Fields(strings.TrimPrefix(l, "```"))
		start := i + 1
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
		}
		if i >= len(lines) {
			return nil, fmt.Errorf("%s:%d: unterminated code block", path, start)
		}
		body := strings.Join(lines[start:i], "\n")
		kind := strings.Join(info, " ")
		if kind == "yaml" {
			out = append(out, Example{Line: start, YAML: body})
			continue
		}
		if len(info) == 0 || info[0] != "http" {
			continue // other blocks (shell, text) are prose
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s:%d: %s block before any yaml block", path, start, kind)
		}
		ex := &out[len(out)-1]
		if kind == "http request" {
			ex.Exchanges = append(ex.Exchanges, Exchange{Line: start, Request: body})
			continue
		}
		if len(info) == 4 && info[1] == "request" && info[2] == "from" {
			if _, err := netip.ParseAddr(info[3]); err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %v", path, start, kind, err)
			}
			ex.Exchanges = append(ex.Exchanges, Exchange{Line: start, Request: body, Client: info[3]})
			continue
		}
		if len(ex.Exchanges) == 0 {
			return nil, fmt.Errorf("%s:%d: %s block before its http request block", path, start, kind)
		}
		x := &ex.Exchanges[len(ex.Exchanges)-1]
		switch kind {
		case "http upstream-request":
			x.UpstreamRequest = body
		case "http upstream-response":
			x.UpstreamResponse = body
		case "http response":
			x.Response = body
		default:
			return nil, fmt.Errorf("%s:%d: unknown block kind %q", path, start, kind)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no yaml examples under ## Examples", path)
	}
	return out, nil
}

// Options tune RunREADME.
type Options struct {
	// Filter is the filter the README documents; every example must use it.
	Filter string
	// Match compares the values of the named header (canonical spelling) instead of requiring
	// them to be equal; for values that differ on every run, such as generated ids.
	Match map[string]func(got, want string) bool
	// Consumers are handed to the filters (filter.Env.Consumers), for auth filters' examples.
	Consumers *filter.Consumers
}

// RunREADME decodes every example of the README at path with config.DecodeStrict through the
// registered factories and plays its exchanges through the built pipeline.
func RunREADME(t *testing.T, path, src string, opts Options) {
	t.Helper()
	exs, err := Examples(path, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range exs {
		t.Run(fmt.Sprintf("line%d", ex.Line), func(t *testing.T) {
			tree, err := ParseYAML(ex.YAML)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, ex.Line, err)
			}
			if !mentions(tree, opts.Filter) {
				t.Fatalf("%s:%d: example does not use %q", path, ex.Line, opts.Filter)
			}
			p, err := BuildWith(tree, opts.Consumers)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, ex.Line, err)
			}
			for _, x := range ex.Exchanges {
				runExchange(t, fmt.Sprintf("%s:%d", path, x.Line), p, x, opts)
			}
		})
	}
}

func mentions(tree any, name string) bool {
	list, _ := tree.([]any)
	for _, e := range list {
		if e == name {
			return true
		}
		if m, ok := e.(map[string]any); ok {
			if _, ok := m[name]; ok {
				return true
			}
		}
	}
	return false
}

func runExchange(t *testing.T, where string, p *filter.Pipeline, x Exchange, opts Options) {
	t.Helper()
	c := NewCtx(t, x.Request)
	if x.Client != "" {
		c.SetClientIP(netip.MustParseAddr(x.Client))
	}
	reachedUpstream := false
	p.Run(c, func(c *filter.Ctx) {
		reachedUpstream = true
		if x.UpstreamRequest != "" {
			var want fasthttp.Request
			if err := ReadRequest(x.UpstreamRequest, &want); err != nil {
				t.Fatalf("%s: parse upstream-request: %v", where, err)
			}
			compareRequest(t, where, &c.Request, &want, opts)
		}
		if x.UpstreamResponse != "" {
			// Text after an empty line is the upstream's body (filters that transform bodies).
			head, body, _ := strings.Cut(x.UpstreamResponse, "\n\n")
			if err := ReadResponse(head, &c.Response); err != nil {
				t.Fatalf("%s: parse upstream-response: %v", where, err)
			}
			if body != "" {
				c.Response.SetBodyString(body)
			}
		}
	})
	if x.UpstreamRequest != "" && !reachedUpstream {
		t.Errorf("%s: the request never reached the upstream", where)
	}
	if x.Response != "" {
		var want fasthttp.Response
		if err := ReadResponse(x.Response, &want); err != nil {
			t.Fatalf("%s: parse response: %v", where, err)
		}
		if got, w := c.Response.StatusCode(), want.StatusCode(); got != w {
			t.Errorf("%s: response status: got %d, want %d", where, got, w)
		}
		compareHeaders(t, where+": response", respHeaders(&c.Response), respHeaders(&want), opts)
	}
}

func compareRequest(t *testing.T, where string, got, want *fasthttp.Request, opts Options) {
	t.Helper()
	if g, w := string(got.Header.Method()), string(want.Header.Method()); g != w {
		t.Errorf("%s: upstream method: got %s, want %s", where, g, w)
	}
	if g, w := Target(got), Target(want); g != w {
		t.Errorf("%s: upstream target: got %s, want %s", where, g, w)
	}
	compareHeaders(t, where+": upstream request", reqHeaders(got), reqHeaders(want), opts)
}

// Target is the request target the upstream is sent: the path as set (not re-normalised) and
// the query string.
func Target(r *fasthttp.Request) string {
	u := r.URI()
	s := string(u.PathOriginal())
	if q := u.QueryString(); len(q) > 0 {
		s += "?" + string(q)
	}
	return s
}

// header is one "Name: value" line; framing headers the server sets itself are left out.
type header struct{ name, value string }

func reqHeaders(r *fasthttp.Request) []header {
	var out []header
	for k, v := range r.Header.All() {
		out = append(out, header{string(k), string(v)})
	}
	return sorted(out)
}

func respHeaders(r *fasthttp.Response) []header {
	var out []header
	for k, v := range r.Header.All() {
		out = append(out, header{string(k), string(v)})
	}
	return sorted(out)
}

func sorted(hs []header) []header {
	kept := hs[:0]
	for _, h := range hs {
		if h.name != "Content-Length" && h.name != "Date" && h.name != "Connection" {
			kept = append(kept, h)
		}
	}
	// Stable: the order of several values of one header is meaningful.
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].name < kept[j].name })
	return kept
}

func compareHeaders(t *testing.T, where string, got, want []header, opts Options) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		if g.name != w.name {
			ok = false
		} else if m := opts.Match[g.name]; m != nil {
			ok = m(g.value, w.value)
		} else {
			ok = g.value == w.value
		}
	}
	if !ok {
		t.Errorf("%s headers:\ngot:\n%s\nwant:\n%s", where, format(got), format(want))
	}
}

func format(hs []header) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "  %s: %s\n", h.name, h.value)
	}
	return b.String()
}
