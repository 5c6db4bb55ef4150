package rewrite

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

// target runs f on a request for uri and returns the request target it leaves.
func target(tb testing.TB, f filter.Filter, uri string) string {
	tb.Helper()
	c := filtertest.NewCtx(tb, "GET "+uri+" HTTP/1.1\nHost: h\n")
	if got := f.OnRequest(c); got != filter.Continue {
		tb.Fatalf("OnRequest = %v, want Continue", got)
	}
	return filtertest.Target(&c.Request)
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

func TestRewrite(t *testing.T) {
	long := "/api/" + strings.Repeat("x", 600)
	tests := []struct {
		name, cfg, in, want string
	}{
		{"strip", `{strip_prefix: /api}`, "/api/users", "/users"},
		{"strip keeps query", `{strip_prefix: /api}`, "/api/users?a=1&b=%20", "/users?a=1&b=%20"},
		{"strip whole path", `{strip_prefix: /api}`, "/api", "/"},
		{"strip whole path with query", `{strip_prefix: /api}`, "/api?x=1", "/?x=1"},
		{"strip trailing slash", `{strip_prefix: /api}`, "/api/", "/"},
		{"strip segment boundary", `{strip_prefix: /api}`, "/apiary", "/apiary"},
		{"strip no match", `{strip_prefix: /api}`, "/other/api", "/other/api"},
		{"strip prefix with slash", `{strip_prefix: /api/}`, "/api/v1/x", "/v1/x"},
		{"strip keeps encoding", `{strip_prefix: /api}`, "/api/a%2Fb%3Fc", "/a%2Fb%3Fc"},
		{"strip encoded prefix does not match", `{strip_prefix: /api}`, "/%61pi/x", "/%61pi/x"},
		{"strip long path", `{strip_prefix: /api}`, long, long[4:]},
		{"path", `{path: /new/path}`, "/old?q=1", "/new/path?q=1"},
		{"path root", `{path: /}`, "/old", "/"},
		{"add", `{add_prefix: /v2}`, "/users", "/v2/users"},
		{"add trailing slash in prefix", `{add_prefix: /v2/}`, "/users", "/v2/users"},
		{"add keeps trailing slash", `{add_prefix: /v2}`, "/users/", "/v2/users/"},
		{"add to root", `{add_prefix: /v2}`, "/", "/v2/"},
		{"strip then add", `{strip_prefix: /api, add_prefix: /internal}`, "/api/x?y", "/internal/x?y"},
		{"strip all then add", `{strip_prefix: /api, add_prefix: /internal}`, "/api", "/internal"},
		{"strip miss then add", `{strip_prefix: /api, add_prefix: /internal}`, "/web/x", "/internal/web/x"},
		{"path then add", `{path: /x, add_prefix: /p}`, "/a", "/p/x"},
		{"regex", `{regex: {match: "^/old/(.*)$", replace: "/new/$1"}}`, "/old/a/b?q", "/new/a/b?q"},
		{"regex braces", `{regex: {match: "^/u/([0-9]+)$", replace: "/user-${1}x"}}`, "/u/42", "/user-42x"},
		{"regex named", `{regex: {match: "^/(?P<a>[a-z]+)/(?P<b>[a-z]+)$", replace: "/$b/$a"}}`, "/x/y", "/y/x"},
		{"regex dollar", `{regex: {match: "^/p$", replace: "/price$$"}}`, "/p", "/price$"},
		{"regex no match", `{regex: {match: "^/old/(.*)$", replace: "/new/$1"}}`, "/other", "/other"},
		{"regex relative result", `{regex: {match: "^/(.*)$", replace: "$1"}}`, "/abc", "/abc"},
		{"regex empty result", `{regex: {match: "^/(x*)$", replace: "$1"}}`, "/", "/"},
		{"regex unanchored", `{regex: {match: "/v1/", replace: "/v2/"}}`, "/api/v1/x", "/api/v2/x"},
		{"regex then add", `{regex: {match: "^/old(/.*)$", replace: "$1"}, add_prefix: /n}`, "/old/x", "/n/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			if got := target(t, f, tt.in); got != tt.want {
				t.Errorf("%s: got %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, cfg, want string }{
		{"none", `{}`, "no rewrite given"},
		{"unknown key", `{strip: /api}`, "strip"},
		{"two actions", `{strip_prefix: /a, path: /b}`, "exclusive"},
		{"three actions", `{strip_prefix: /a, path: /b, regex: {match: a, replace: /b}}`, "exclusive"},
		{"empty strip", `{strip_prefix: ""}`, "strip_prefix is empty"},
		{"slash strip", `{strip_prefix: /}`, "only slashes"},
		{"relative strip", `{strip_prefix: api}`, "must start with /"},
		{"empty path", `{path: ""}`, "path is empty"},
		{"query in path", `{path: "/a?b=1"}`, "not allowed in a path"},
		{"fragment in path", `{path: "/a#b"}`, "not allowed in a path"},
		{"space in path", `{path: "/a b"}`, "not allowed in a path"},
		{"non-ascii path", `{path: "/caf\u00e9"}`, "not allowed in a path"},
		{"slash add", `{add_prefix: //}`, "only slashes"},
		{"empty match", `{regex: {match: "", replace: /x}}`, "match is empty"},
		{"bad regex", `{regex: {match: "(", replace: /x}}`, "compile match"},
		{"empty replace", `{regex: {match: a}}`, "empty"},
		{"unknown regex key", `{regex: {match: a, replace: /b, flags: i}}`, "flags"},
		{"group out of range", `{regex: {match: "^/(a)$", replace: "/$2"}}`, "1 capture groups"},
		{"digit then word", `{regex: {match: "^/(a)$", replace: "/$1x"}}`, "${1}x"},
		{"unknown name", `{regex: {match: "^/(a)$", replace: "/${nope}"}}`, "no capture group named"},
		{"lone dollar", `{regex: {match: "^/(a)$", replace: "/a$"}}`, "lone $"},
		{"bad brace", `{regex: {match: "^/(a)$", replace: "/${1"}}`, "lone $"},
		{"query in template", `{regex: {match: "^/(a)$", replace: "/x?y=$1"}}`, "not allowed in a path"},
		{"wrong type", `{regex: /x}`, "regex"},
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

// TestPipeline chains two rewrites: the second sees the path the first left.
func TestPipeline(t *testing.T) {
	strip := mustBuild(t, `{strip_prefix: /api}`)
	re := mustBuild(t, `{regex: {match: "^/v1/(.*)$", replace: "/legacy/$1"}}`)
	p := filter.NewPipeline([]filter.Filter{strip, re}, []string{Name, Name})
	c := filtertest.NewCtx(t, "GET /api/v1/items?x=1 HTTP/1.1\nHost: h\n")
	var got string
	p.Run(c, func(c *filter.Ctx) { got = filtertest.Target(&c.Request) })
	if want := "/legacy/items?x=1"; got != want {
		t.Errorf("upstream target: got %s, want %s", got, want)
	}

	// The other order: the regex sees the unstripped path and does not match.
	p = filter.NewPipeline([]filter.Filter{re, strip}, []string{Name, Name})
	c = filtertest.NewCtx(t, "GET /api/v1/items?x=1 HTTP/1.1\nHost: h\n")
	p.Run(c, func(c *filter.Ctx) { got = filtertest.Target(&c.Request) })
	if want := "/v1/items?x=1"; got != want {
		t.Errorf("upstream target, reversed: got %s, want %s", got, want)
	}
}

// TestZeroAllocs proves the non-regex modes allocate nothing. Each run restores the original path
// so every iteration does a real rewrite.
func TestZeroAllocs(t *testing.T) {
	for _, cfg := range []string{
		`{strip_prefix: /api}`,
		`{path: /new/path}`,
		`{add_prefix: /v2}`,
		`{strip_prefix: /api, add_prefix: /internal}`,
	} {
		f := mustBuild(t, cfg)
		c := filtertest.NewCtx(t, "GET /api/users/42?x=1 HTTP/1.1\nHost: h\n")
		orig := []byte("/api/users/42")
		allocs := testing.AllocsPerRun(200, func() {
			c.URI().SetPathBytes(orig)
			f.OnRequest(c)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per request, want 0", cfg, allocs)
		}
	}
}

func benchmark(b *testing.B, cfg string) {
	f := mustBuild(b, cfg)
	c := filtertest.NewCtx(b, "GET /api/users/42?x=1 HTTP/1.1\nHost: h\n")
	orig := []byte("/api/users/42")
	b.ReportAllocs()
	for b.Loop() {
		c.URI().SetPathBytes(orig)
		f.OnRequest(c)
	}
}

func BenchmarkStripPrefix(b *testing.B) { benchmark(b, `{strip_prefix: /api}`) }
func BenchmarkPath(b *testing.B)        { benchmark(b, `{path: /new/path}`) }
func BenchmarkStripAdd(b *testing.B)    { benchmark(b, `{strip_prefix: /api, add_prefix: /internal}`) }
func BenchmarkRegex(b *testing.B) {
	benchmark(b, `{regex: {match: "^/api/users/([0-9]+)$", replace: "/people/$1"}}`)
}
