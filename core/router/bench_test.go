package router

import (
	"fmt"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
)

// benchRoutes builds n routes spread over exact hosts, wildcard hosts and no host, with exact
// paths, prefixes, parameterised paths, catch-alls and method constraints in equal shares, plus
// a handful of regular-expression routes (which are tried one by one per host, so a real
// config keeps them few).
func benchRoutes(n int) []Route {
	routes := make([]Route, 0, n)
	for i := 0; len(routes) < n; i++ {
		r := Route{Name: fmt.Sprint("r", i)}
		switch i % 4 {
		case 0:
			r.Host = fmt.Sprintf("svc%d.example.com", i%100)
		case 1:
			r.Host = fmt.Sprintf("*.t%d.example.net", i%20)
		}
		switch i % 5 {
		case 0:
			r.Path = fmt.Sprintf("/api/v%d/res%d", i%7, i)
		case 1:
			r.PathPrefix = fmt.Sprintf("/static%d/", i)
		case 2:
			r.Path = fmt.Sprintf("/users%d/{id}/posts/{post}", i)
		case 3:
			r.Path = fmt.Sprintf("/org/%d/{team}/{rest...}", i)
		case 4:
			r.Path = fmt.Sprintf("/health%d", i)
			r.Methods = []string{"GET", "HEAD"}
		}
		if i < 5 {
			r = Route{Name: r.Name, PathRegex: fmt.Sprintf(`/re%d/[a-z]+/[0-9]+`, i)}
		}
		routes = append(routes, r)
	}
	return routes
}

type benchReq struct{ name, host, path, want string }

func benchMatch(b *testing.B, routes []Route, reqs []benchReq) {
	tab := mustCompile(b, routes)
	method := []byte("GET")
	var params [filter.MaxParams]filter.Param
	var n int
	for _, r := range reqs {
		host, path := []byte(r.host), []byte(r.path)
		got := ""
		if id := tab.Match(method, host, path, nil, &params, &n); id >= 0 {
			got = routes[id].Name
		}
		if got != r.want {
			b.Fatalf("%s: got route %q, want %q", r.name, got, r.want)
		}
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Match(method, host, path, nil, &params, &n)
			}
		})
	}
}

func BenchmarkMatch10k(b *testing.B) {
	routes := benchRoutes(10_000)
	benchMatch(b, routes, []benchReq{
		{"exact", "svc20.example.com", "/api/v1/res5020", "r5020"},
		{"exact-anyhost", "other.org", "/api/v4/res5030", "r5030"},
		{"prefix", "other.org", "/static5011/css/site.css", "r5011"},
		{"param", "svc12.example.com", "/users5012/42/posts/7", "r5012"},
		{"catch-all", "a.T13.example.net:8443", "/org/5013/core/a/b/c", "r5013"},
		{"method", "other.org", "/health5014", "r5014"},
		{"regex", "other.org", "/re3/abc/123", "r3"},
		{"miss", "other.org", "/nothing/here/at/all", ""},
		{"miss-known-host", "svc20.example.com", "/nothing/here", ""},
	})
}

func BenchmarkMatch10(b *testing.B) {
	routes := benchRoutes(10)
	benchMatch(b, routes, []benchReq{
		{"exact", "a.t5.example.net", "/api/v5/res5", "r5"},
		{"param", "other.org", "/users7/42/posts/7", "r7"},
		{"regex", "other.org", "/re3/abc/123", "r3"},
		{"miss", "other.org", "/nothing/here/at/all", ""},
	})
}

func BenchmarkCompile10k(b *testing.B) {
	routes := benchRoutes(10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(routes); err != nil {
			b.Fatal(err)
		}
	}
}
