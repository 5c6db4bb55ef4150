package router

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// req is one request in a match table; headers is "Name: value" lines joined by "\n".
type req struct {
	method, host, path, headers string
}

func (r req) String() string {
	return fmt.Sprintf("%s %s%s [%s]", r.method, r.host, r.path, strings.ReplaceAll(r.headers, "\n", "; "))
}

func (r req) header() *fasthttp.RequestHeader {
	if r.headers == "" {
		return nil
	}
	h := &fasthttp.RequestHeader{}
	for _, line := range strings.Split(r.headers, "\n") {
		k, v, _ := strings.Cut(line, ": ")
		h.Set(k, v)
	}
	return h
}

// run matches r and returns the winner's name ("" for none) and its parameters as "k=v,k=v".
func run(t *Table, routes []Route, r req) (string, string) {
	var params [filter.MaxParams]filter.Param
	n := -1
	id := t.Match([]byte(r.method), []byte(r.host), []byte(r.path), r.header(), &params, &n)
	var ps []string
	for _, p := range params[:max(n, 0)] {
		ps = append(ps, p.Key+"="+string(p.Value))
	}
	if id < 0 {
		return "", strings.Join(ps, ",")
	}
	return routes[id].Name, strings.Join(ps, ",")
}

func mustCompile(tb testing.TB, routes []Route) *Table {
	tb.Helper()
	t, err := Compile(routes)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return t
}

func get(host, path string) req { return req{method: "GET", host: host, path: path} }

func TestMatch(t *testing.T) {
	type want struct {
		r      req
		name   string
		params string
	}
	tests := []struct {
		name   string
		routes []Route
		cases  []want
	}{
		{
			name: "exact path",
			routes: []Route{
				{Name: "health", Path: "/health"},
				{Name: "root", Path: "/"},
			},
			cases: []want{
				{r: get("x", "/health"), name: "health"},
				{r: get("x", "/health/"), name: ""},
				{r: get("x", "/Health"), name: ""},
				{r: get("x", "/"), name: "root"},
				{r: get("x", ""), name: ""},
			},
		},
		{
			name: "path prefix",
			routes: []Route{
				{Name: "v1", PathPrefix: "/v1/"},
				{Name: "api", PathPrefix: "/api"},
			},
			cases: []want{
				{r: get("x", "/v1/"), name: "v1"},
				{r: get("x", "/v1/users/7"), name: "v1"},
				{r: get("x", "/v1"), name: ""},
				{r: get("x", "/apiary"), name: "api"},
				{r: get("x", "/ap"), name: ""},
			},
		},
		{
			name: "regex anchored",
			routes: []Route{
				{Name: "items", PathRegex: `/items/[0-9]+`},
				{Name: "alt", PathRegex: `/a|/b`},
			},
			cases: []want{
				{r: get("x", "/items/12"), name: "items"},
				{r: get("x", "/items/12x"), name: ""},
				{r: get("x", "/x/items/12"), name: ""},
				{r: get("x", "/a"), name: "alt"},
				{r: get("x", "/b"), name: "alt"},
				{r: get("x", "/ab"), name: ""},
			},
		},
		{
			name: "params",
			routes: []Route{
				{Name: "post", Path: "/users/{id}/posts/{post}"},
				{Name: "user", Path: "/users/{id}"},
				{Name: "slash", Path: "/tags/{tag}/"},
			},
			cases: []want{
				{r: get("x", "/users/42/posts/7"), name: "post", params: "id=42,post=7"},
				{r: get("x", "/users/42"), name: "user", params: "id=42"},
				{r: get("x", "/users/"), name: ""},
				{r: get("x", "/users//posts/7"), name: ""},
				{r: get("x", "/users/42/posts/"), name: ""},
				{r: get("x", "/users/42/posts/7/8"), name: ""},
				{r: get("x", "/tags/go/"), name: "slash", params: "tag=go"},
				{r: get("x", "/tags/go"), name: ""},
			},
		},
		{
			name: "catch-all",
			routes: []Route{
				{Name: "static", Path: "/static/{path...}"},
				{Name: "all", Path: "/{rest...}"},
			},
			cases: []want{
				{r: get("x", "/static/css/a.css"), name: "static", params: "path=css/a.css"},
				{r: get("x", "/static/"), name: "static", params: "path="},
				{r: get("x", "/static"), name: "all", params: "rest=static"},
				{r: get("x", "/"), name: "all", params: "rest="},
				{r: get("x", "/a//b"), name: "all", params: "rest=a//b"},
				{r: get("x", "nope"), name: ""},
			},
		},
		{
			name: "methods",
			routes: []Route{
				{Name: "read", Path: "/r", Methods: []string{"get", "HEAD"}},
				{Name: "write", Path: "/w", Methods: []string{"POST", "PUT"}},
			},
			cases: []want{
				{r: req{method: "GET", path: "/r"}, name: "read"},
				{r: req{method: "HEAD", path: "/r"}, name: "read"},
				{r: req{method: "get", path: "/r"}, name: ""},
				{r: req{method: "POST", path: "/r"}, name: ""},
				{r: req{method: "PUT", path: "/w"}, name: "write"},
				{r: req{method: "GET", path: "/w"}, name: ""},
			},
		},
		{
			name: "headers",
			routes: []Route{
				{Name: "key", Path: "/h", Headers: []Header{{Name: "x-api-key", Value: "s3cret"}}},
				{Name: "present", Path: "/p", Headers: []Header{{Name: "X-Trace", Value: "*"}}},
				{Name: "both", Path: "/b", Headers: []Header{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}},
			},
			cases: []want{
				{r: req{method: "GET", path: "/h", headers: "X-API-KEY: s3cret"}, name: "key"},
				{r: req{method: "GET", path: "/h", headers: "x-api-key: S3CRET"}, name: ""},
				{r: req{method: "GET", path: "/h", headers: "Other: s3cret"}, name: ""},
				{r: req{method: "GET", path: "/h"}, name: ""}, // nil header
				{r: req{method: "GET", path: "/p", headers: "x-trace: anything"}, name: "present"},
				{r: req{method: "GET", path: "/p", headers: "X-Other: 1"}, name: ""},
				{r: req{method: "GET", path: "/b", headers: "A: 1\nB: 2"}, name: "both"},
				{r: req{method: "GET", path: "/b", headers: "A: 1"}, name: ""},
			},
		},
		{
			name: "exact host",
			routes: []Route{
				{Name: "api", Host: "API.example.com"},
				{Name: "v6", Host: "[::1]"},
				{Name: "dot", Host: "dot.example.com."},
			},
			cases: []want{
				{r: get("api.example.com", "/"), name: "api"},
				{r: get("Api.Example.COM", "/"), name: "api"},
				{r: get("api.example.com:8443", "/"), name: "api"},
				{r: get("api.example.com.", "/"), name: "api"},
				{r: get("api.example.com.:80", "/"), name: "api"},
				{r: get("x.api.example.com", "/"), name: ""},
				{r: get("api.example.co", "/"), name: ""},
				{r: get("", "/"), name: ""},
				{r: get("[::1]:8080", "/"), name: "v6"},
				{r: get("[::1]", "/"), name: "v6"},
				{r: get("dot.example.com", "/"), name: "dot"},
			},
		},
		{
			name: "wildcard host",
			routes: []Route{
				{Name: "wild", Host: "*.Example.com"},
			},
			cases: []want{
				{r: get("a.example.com", "/"), name: "wild"},
				{r: get("a.b.c.example.com:9000", "/"), name: "wild"},
				{r: get("A.EXAMPLE.COM", "/"), name: "wild"},
				{r: get("example.com", "/"), name: ""},
				{r: get(".example.com", "/"), name: ""},
				{r: get("aexample.com", "/"), name: ""},
				{r: get("a.example.com.evil", "/"), name: ""},
				{r: get(strings.Repeat("a", 300)+".example.com", "/"), name: "wild"},
				{r: get(strings.Repeat("a.", 200)+"example.com", "/"), name: "wild"},
			},
		},
		{
			name: "any host",
			routes: []Route{
				{Name: "star", Host: "*", Path: "/s"},
				{Name: "empty", Path: "/e"},
			},
			cases: []want{
				{r: get("whatever.org", "/s"), name: "star"},
				{r: get("", "/e"), name: "empty"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustCompile(t, tt.routes)
			for _, c := range tt.cases {
				gotName, gotParams := run(tab, tt.routes, c.r)
				if gotName != c.name || gotParams != c.params {
					t.Errorf("%v: got route %q params %q, want %q params %q", c.r, gotName, gotParams, c.name, c.params)
				}
			}
		})
	}
}

// TestSpecificity covers every rule of the package doc, each with routes listed in the reverse
// of their specificity so that config order cannot explain the result.
func TestSpecificity(t *testing.T) {
	tests := []struct {
		name   string
		routes []Route
		cases  map[req]string
	}{
		{
			name: "rule 1: exact host > wildcard > any host",
			routes: []Route{
				{Name: "any", Path: "/x"},
				{Name: "wild", Host: "*.example.com"},
				{Name: "wild-long", Host: "*.api.example.com"},
				{Name: "exact", Host: "api.example.com"},
			},
			cases: map[req]string{
				get("api.example.com", "/x"):    "exact",
				get("v1.api.example.com", "/x"): "wild-long",
				get("b.example.com", "/x"):      "wild",
				get("example.com", "/x"):        "any",
			},
		},
		{
			name: "rule 1: a host without a matching route falls back",
			routes: []Route{
				{Name: "any", PathPrefix: "/"},
				{Name: "wild", Host: "*.example.com", Path: "/w"},
				{Name: "exact", Host: "api.example.com", Path: "/a"},
			},
			cases: map[req]string{
				get("api.example.com", "/a"): "exact",
				get("api.example.com", "/w"): "wild",
				get("api.example.com", "/z"): "any",
			},
		},
		{
			name: "rule 2: exact > param > prefix > regex > none",
			routes: []Route{
				{Name: "none"},
				{Name: "regex", PathRegex: `/u.*`},
				{Name: "prefix", PathPrefix: "/users/"},
				{Name: "param", Path: "/users/{id}"},
				{Name: "exact", Path: "/users/me"},
			},
			cases: map[req]string{
				get("h", "/users/me"):   "exact",
				get("h", "/users/42"):   "param",
				get("h", "/users/42/x"): "prefix",
				get("h", "/ux"):         "regex",
				get("h", "/zzz"):        "none",
			},
		},
		{
			name: "rule 3: more literal segments, then no catch-all",
			routes: []Route{
				{Name: "a-x-y", Path: "/a/{x}/{y}"},
				{Name: "a-b-y", Path: "/a/b/{y}"},
				{Name: "a-rest", Path: "/a/{rest...}"},
				{Name: "a-x", Path: "/a/{x}"},
				{Name: "a-b-rest", Path: "/a/b/{rest...}"},
				{Name: "c-x-d", Path: "/c/{x}/d"},
				{Name: "c-d-rest", Path: "/c/d/{rest...}"},
			},
			cases: map[req]string{
				get("h", "/a/b/c"):   "a-b-y",
				get("h", "/a/c/d"):   "a-x-y",
				get("h", "/a/c"):     "a-x",
				get("h", "/a/c/d/e"): "a-rest",
				get("h", "/a/b/c/d"): "a-b-rest",
				get("h", "/c/d/d"):   "c-x-d", // both have two literals: no catch-all wins
			},
		},
		{
			name: "rule 4 across parameterised shapes of equal rank",
			routes: []Route{
				{Name: "a-p", Path: "/a/{p}"},
				{Name: "p-a-get", Path: "/{p}/a", Methods: []string{"GET"}},
			},
			cases: map[req]string{
				get("h", "/a/a"):              "p-a-get",
				{method: "PUT", path: "/a/a"}: "a-p",
			},
		},
		{
			name: "rule 3: longest prefix",
			routes: []Route{
				{Name: "v", PathPrefix: "/v"},
				{Name: "v1", PathPrefix: "/v1/"},
				{Name: "v1-users", PathPrefix: "/v1/users/"},
				{Name: "v1-users-post", PathPrefix: "/v1/users/", Methods: []string{"POST"}},
			},
			cases: map[req]string{
				get("h", "/v1/users/5"):                          "v1-users",
				{method: "POST", host: "h", path: "/v1/users/5"}: "v1-users-post",
				get("h", "/v1/x"):                                "v1",
				get("h", "/v2"):                                  "v",
			},
		},
		{
			name: "rule 3: a longer prefix whose constraints fail yields to a shorter one",
			routes: []Route{
				{Name: "short", PathPrefix: "/v1/"},
				{Name: "long", PathPrefix: "/v1/users/", Methods: []string{"POST"}},
			},
			cases: map[req]string{
				get("h", "/v1/users/5"): "short",
			},
		},
		{
			name: "rule 4: more constraints win",
			routes: []Route{
				{Name: "plain", Path: "/c"},
				{Name: "method", Path: "/c", Methods: []string{"GET"}},
				{Name: "method+header", Path: "/c", Methods: []string{"GET"}, Headers: []Header{{Name: "X-A", Value: "1"}}},
			},
			cases: map[req]string{
				{method: "GET", path: "/c", headers: "X-A: 1"}:  "method+header",
				{method: "GET", path: "/c", headers: "X-A: 2"}:  "method",
				{method: "POST", path: "/c", headers: "X-A: 1"}: "plain",
			},
		},
		{
			name: "rule 4 applies to every kind",
			routes: []Route{
				{Name: "p", Path: "/p/{x}"},
				{Name: "p-get", Path: "/p/{x}", Methods: []string{"GET"}},
				{Name: "r", PathRegex: "/r"},
				{Name: "r-get", PathRegex: "/r", Methods: []string{"GET"}},
				{Name: "n"},
				{Name: "n-get", Methods: []string{"GET"}},
			},
			cases: map[req]string{
				get("h", "/p/1"):                       "p-get",
				{method: "PUT", path: "/p/1"}:          "p",
				get("h", "/r"):                         "r-get",
				{method: "PUT", host: "h", path: "/r"}: "r",
				get("h", "/zz"):                        "n-get",
				{method: "PUT", path: "/zz"}:           "n",
			},
		},
		{
			name: "rule 5: config order breaks ties",
			routes: []Route{
				{Name: "first", Path: "/t", Methods: []string{"GET"}},
				{Name: "second", Path: "/t", Headers: []Header{{Name: "X", Value: "*"}}},
				{Name: "third", Path: "/t", Methods: []string{"GET"}},
				{Name: "p1", Path: "/q/{a}"},
				{Name: "p2", Path: "/q/{b}"},
			},
			cases: map[req]string{
				{method: "GET", path: "/t", headers: "X: 1"}: "first",
				{method: "PUT", path: "/t", headers: "X: 1"}: "second",
				get("h", "/q/1"): "p1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustCompile(t, tt.routes)
			for r, want := range tt.cases {
				if got, _ := run(tab, tt.routes, r); got != want {
					t.Errorf("%v: got %q, want %q", r, got, want)
				}
			}
		})
	}
}

func TestParamsUseTableKeys(t *testing.T) {
	routes := []Route{{Name: "u", Path: "/u/{id}"}}
	tab := mustCompile(t, routes)
	path := []byte("/u/42")
	var params [filter.MaxParams]filter.Param
	var n int
	if id := tab.Match([]byte("GET"), nil, path, nil, &params, &n); id != 0 || n != 1 {
		t.Fatalf("got id %d n %d, want 0 1", id, n)
	}
	// The value must alias the request path, not a copy, so that Match need not allocate.
	if &params[0].Value[0] != &path[3] {
		t.Errorf("param value does not point into the path")
	}
	// A later non-parameter match resets the count.
	tab2 := mustCompile(t, []Route{{Name: "x", Path: "/x"}})
	if id := tab2.Match([]byte("GET"), nil, []byte("/x"), nil, &params, &n); id != 0 || n != 0 {
		t.Errorf("got id %d n %d, want 0 0", id, n)
	}
	// Nil outputs are tolerated.
	if id := tab.Match([]byte("GET"), nil, path, nil, nil, nil); id != 0 {
		t.Errorf("got id %d, want 0", id)
	}
}

func TestLenAndEmpty(t *testing.T) {
	for _, tt := range []struct {
		routes []Route
		want   int
	}{
		{nil, 0},
		{[]Route{{Name: "a"}, {Name: "b", Path: "/b"}}, 2},
	} {
		tab := mustCompile(t, tt.routes)
		if got := len(tab.routes); got != tt.want {
			t.Errorf("Len: got %d, want %d", got, tt.want)
		}
	}
	tab := mustCompile(t, nil)
	if got := tab.Match([]byte("GET"), []byte("h"), []byte("/"), nil, nil, nil); got != -1 {
		t.Errorf("empty table: got %d, want -1", got)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		want  string
	}{
		{"regex", Route{Name: "api", PathRegex: "("}, `route "api": invalid path_regex "(": error parsing regexp: missing closing )`},
		{"two paths", Route{Name: "two", Path: "/a", PathPrefix: "/a"}, `route "two": at most one of path, path_prefix and path_regex may be set`},
		{"path and regex", Route{Name: "two", Path: "/a", PathRegex: "/a"}, `route "two": at most one of path`},
		{"inner wildcard", Route{Name: "h", Host: "a.*.com"}, `route "h": invalid host "a.*.com": "*" is allowed only as the whole first label`},
		{"glued wildcard", Route{Name: "h", Host: "*example.com"}, `invalid host "*example.com"`},
		{"bare wildcard", Route{Name: "h", Host: "*."}, `invalid host "*.": wildcard without a domain`},
		{"port", Route{Name: "h", Host: "example.com:80"}, `invalid host "example.com:80": must not carry a port`},
		{"empty label", Route{Name: "h", Host: "a..com"}, `invalid host "a..com": empty label`},
		{"bad char", Route{Name: "h", Host: "a b.com"}, `invalid host "a b.com": invalid character ' '`},
		{"bad ipv6", Route{Name: "h", Host: "[zz]"}, `invalid host "[zz]": malformed IPv6 literal`},
		{"wild ipv6", Route{Name: "h", Host: "*.[::1]"}, `a wildcard cannot precede an IP literal`},
		{"long host", Route{Name: "h", Host: strings.Repeat("a", 254)}, `254 bytes, at most 253`},
		{"unclosed param", Route{Name: "p", Path: "/a/{id"}, `route "p": invalid path "/a/{id": segment "{id": a parameter must be a whole segment`},
		{"partial param", Route{Name: "p", Path: "/a/x{id}"}, `segment "x{id}": a parameter must be a whole segment`},
		{"nested braces", Route{Name: "p", Path: "/{{id}}"}, `segment "{{id}}"`},
		{"catch-all not last", Route{Name: "p", Path: "/{a...}/b"}, `segment "{a...}": {name...} must be the last segment`},
		{"bad name", Route{Name: "p", Path: "/{1x}"}, `segment "{1x}": a parameter name is`},
		{"empty name", Route{Name: "p", Path: "/{}"}, `segment "{}": a parameter name is`},
		{"empty catch-all name", Route{Name: "p", Path: "/{...}"}, `segment "{...}": a parameter name is`},
		{"duplicate", Route{Name: "p", Path: "/{a}/x/{a}"}, `route "p": invalid path "/{a}/x/{a}": duplicate parameter "a"`},
		{"duplicate with catch-all", Route{Name: "p", Path: "/{a}/{a...}"}, `duplicate parameter "a"`},
		{"too many", Route{Name: "p", Path: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"}, `9 parameters, at most 8`},
		{"relative path", Route{Name: "p", Path: "users"}, `invalid path "users": must start with "/"`},
		{"relative prefix", Route{Name: "p", PathPrefix: "v1/"}, `invalid path_prefix "v1/": must start with "/"`},
		{"prefix params", Route{Name: "p", PathPrefix: "/u/{id}/"}, `a prefix cannot hold parameters`},
		{"method", Route{Name: "m", Methods: []string{"GE T"}}, `route "m": invalid method "GE T"`},
		{"empty method", Route{Name: "m", Methods: []string{""}}, `invalid method ""`},
		{"header name", Route{Name: "h", Headers: []Header{{Name: "X A", Value: "1"}}}, `route "h": invalid header name "X A"`},
		{"header value", Route{Name: "h", Headers: []Header{{Name: "X", Value: ""}}}, `header "X": empty value`},
		{"unnamed", Route{PathRegex: "["}, `route #0: invalid path_regex "["`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Compile([]Route{tt.route})
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if tab != nil {
				t.Errorf("got a table with the error")
			}
			if got := err.Error(); !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestCompileErrorsJoined(t *testing.T) {
	_, err := Compile([]Route{
		{Name: "ok", Path: "/ok"},
		{Name: "a", PathRegex: "(", Host: "a.*.b"},
		{Name: "b", Path: "/{x}/{x}"},
	})
	if err == nil {
		t.Fatal("got no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("got %T, want a joined error", err)
	}
	var got []string
	for _, e := range joined.Unwrap() {
		got = append(got, strings.SplitN(e.Error(), ":", 3)[0]+":"+strings.SplitN(e.Error(), ":", 3)[1])
	}
	want := []string{
		`route "a": invalid host "a.*.b"`,
		`route "a": invalid path_regex "("`,
		`route "b": invalid path "/{x}/{x}"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidInputsCompile(t *testing.T) {
	routes := []Route{
		{Name: "ipv4", Host: "10.0.0.1"},
		{Name: "under", Host: "_srv.example.com"},
		{Name: "dup-method", Methods: []string{"GET", "get"}},
		// Only a raw route can match an empty segment: normal paths have none.
		{Name: "empty-literal", Path: "/a//{b}", Raw: true},
		{Name: "max", Path: "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h...}"},
	}
	tab := mustCompile(t, routes)
	if got, _ := runRaw(tab, routes, get("h", "/a//x")); got != "empty-literal" {
		t.Errorf("got %q, want empty-literal", got)
	}
	if got, p := run(tab, routes, get("h", "/1/2/3/4/5/6/7/8/9")); got != "max" || p != "a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8/9" {
		t.Errorf("got %q %q", got, p)
	}
	if got := tab.routes[2].methods; !slices.Equal(got, []string{"GET"}) {
		t.Errorf("methods: got %q, want [GET]", got)
	}
}

// TestMatchAllocs proves the hot path allocates nothing, for every kind and for misses.
func TestMatchAllocs(t *testing.T) {
	routes := []Route{
		{Name: "exact", Host: "api.example.com", Path: "/v1/users/me"},
		{Name: "param", Host: "api.example.com", Path: "/v1/users/{id}/posts/{post}"},
		{Name: "catch", Host: "api.example.com", Path: "/static/{path...}"},
		{Name: "prefix", Host: "api.example.com", PathPrefix: "/v1/"},
		{Name: "wild", Host: "*.example.com", PathPrefix: "/w/"},
		{Name: "hdr", Path: "/h", Methods: []string{"GET"}, Headers: []Header{{Name: "X-Env", Value: "prod"}}},
		{Name: "regex", PathRegex: `/items/[0-9]+`},
		{Name: "regex2", PathRegex: `/(a|b)+/c`},
	}
	tab := mustCompile(t, routes)
	h := &fasthttp.RequestHeader{}
	h.Set("X-Env", "prod")
	tests := []struct {
		name, host, path string
		want             string
	}{
		{"exact", "api.example.com", "/v1/users/me", "exact"},
		{"exact host with port and case", "API.Example.com:8443", "/v1/users/me", "exact"},
		{"param", "api.example.com", "/v1/users/42/posts/7", "param"},
		{"catch-all", "api.example.com", "/static/a/b.css", "catch"},
		{"prefix", "api.example.com", "/v1/other", "prefix"},
		{"wildcard", "a.b.example.com", "/w/x", "wild"},
		{"header", "other.org", "/h", "hdr"},
		{"regex", "other.org", "/items/123", "regex"},
		{"regex alternation", "other.org", "/abab/c", "regex2"},
		{"long host", strings.Repeat("a", 300) + ".example.com", "/w/x", "wild"},
		{"no match", "other.org", "/nothing/here", ""},
		{"no match on known host", "api.example.com", "/zzz", ""},
	}
	method := []byte("GET")
	var params [filter.MaxParams]filter.Param
	var n int
	for _, tt := range tests {
		host, path := []byte(tt.host), []byte(tt.path)
		id := tab.Match(method, host, path, h, &params, &n)
		got := ""
		if id >= 0 {
			got = routes[id].Name
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
		allocs := testing.AllocsPerRun(200, func() {
			tab.Match(method, host, path, h, &params, &n)
		})
		if allocs != 0 {
			t.Errorf("%s: got %v allocs per Match, want 0", tt.name, allocs)
		}
	}
}

// TestConcurrentMatch shares one table between goroutines; under -race it proves that Match
// only reads the table.
func TestConcurrentMatch(t *testing.T) {
	tab := mustCompile(t, fuzzRoutes)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var params [filter.MaxParams]filter.Param
			var n int
			for i := 0; i < 500; i++ {
				if id := tab.Match([]byte("GET"), []byte("x.api.example.com"), []byte("/v1/users/42"), nil, &params, &n); id < 0 {
					t.Errorf("got no match")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestAllowed: on a miss, Allowed names the methods with which some route would match, and
// TRACE matches only routes that allow it.
func TestAllowed(t *testing.T) {
	routes := []Route{
		{Name: "items", PathPrefix: "/items", Methods: []string{"GET", "post"}},
		{Name: "item-delete", PathPrefix: "/items/", Methods: []string{"DELETE", "PURGE"}},
		{Name: "any", Host: "any.test"},
		{Name: "traced", Path: "/traced", AllowTrace: true},
		{Name: "trace-listed", Path: "/tl", Methods: []string{"TRACE"}},
		{Name: "hdr", Path: "/h", Methods: []string{"PUT"}, Headers: []Header{{Name: "X-Env", Value: "prod"}}},
		{Name: "raw", PathPrefix: "/raw/", Methods: []string{"PATCH"}, Raw: true},
	}
	tab := mustCompile(t, routes)
	tests := []struct {
		r         req
		match     string
		wantAllow string
	}{
		{r: req{method: "PUT", host: "a.test", path: "/items"}, wantAllow: "GET, POST"},
		{r: req{method: "PUT", host: "a.test", path: "/items/1"}, wantAllow: "GET, POST, DELETE, PURGE"},
		{r: req{method: "GET", host: "a.test", path: "/items/1"}, match: "items"},
		{r: req{method: "GET", host: "a.test", path: "/nothing"}},
		{r: req{method: "TRACE", host: "any.test", path: "/x"}, wantAllow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, PURGE"},
		{r: req{method: "TRACE", host: "a.test", path: "/traced"}, match: "traced"},
		{r: req{method: "TRACE", host: "a.test", path: "/tl"}, match: "trace-listed"},
		{r: req{method: "GET", host: "a.test", path: "/tl"}, wantAllow: "TRACE"},
		{r: req{method: "GET", host: "a.test", path: "/h", headers: "X-Env: prod"}, wantAllow: "PUT"},
		{r: req{method: "GET", host: "a.test", path: "/h", headers: "X-Env: dev"}},
	}
	for _, tt := range tests {
		name, _ := run(tab, routes, tt.r)
		if name != tt.match {
			t.Errorf("%s: matched %q, want %q", tt.r, name, tt.match)
			continue
		}
		if name != "" {
			continue
		}
		got := tab.Allowed(nil, []byte(tt.r.method), []byte(tt.r.host), []byte(tt.r.path), []byte(tt.r.path), tt.r.header())
		if string(got) != tt.wantAllow {
			t.Errorf("%s: Allowed %q, want %q", tt.r, got, tt.wantAllow)
		}
	}
	// Raw routes are tried on the raw path, and a path without a normal form only on them.
	if got := tab.Allowed(nil, []byte("GET"), []byte("a.test"), nil, []byte("/raw/a%2fb"), nil); string(got) != "PATCH" {
		t.Errorf("raw: Allowed %q, want %q", got, "PATCH")
	}
	method, host, path := []byte("PUT"), []byte("a.test"), []byte("/items/1")
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = tab.Allowed(buf[:0], method, host, path, path, nil) }); n != 0 {
		t.Errorf("Allowed: %v allocations, want 0", n)
	}
}
