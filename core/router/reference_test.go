package router

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// reference is a deliberately naive matcher: it checks every route against the request with
// plain string operations, ranks the matches by a key built straight from the specificity rules
// of the package doc and keeps the highest. It shares no code with the table.
type reference struct {
	routes []Route
	res    map[string]*regexp.Regexp
}

func newReference(routes []Route) *reference {
	ref := &reference{routes: routes, res: map[string]*regexp.Regexp{}}
	for _, r := range routes {
		if r.PathRegex != "" {
			ref.res[r.PathRegex] = regexp.MustCompile("^(?:" + r.PathRegex + ")$")
		}
	}
	return ref
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// refHost returns rule 1's key: {2, 0} exact, {1, suffix length} wildcard, {0, 0} any host.
func refHost(pattern, host string) ([]int, bool) {
	if strings.HasPrefix(host, "[") && strings.Contains(host, "]") {
		host = host[:strings.Index(host, "]")+1]
	} else {
		host, _, _ = strings.Cut(host, ":")
		host = strings.TrimSuffix(host, ".")
	}
	host = asciiLower(host)
	pattern = asciiLower(pattern)
	switch {
	case pattern == "" || pattern == "*":
		return []int{0, 0}, true
	case strings.HasPrefix(pattern, "*."):
		suffix := strings.TrimSuffix(pattern[2:], ".")
		return []int{1, len(suffix)}, strings.HasSuffix(host, "."+suffix) && len(host) > len(suffix)+1
	default:
		return []int{2, 0}, host == strings.TrimSuffix(pattern, ".")
	}
}

// refPath returns rules 2 and 3's key and the captured parameters.
func (ref *reference) refPath(r Route, path string) ([]int, map[string]string, bool) {
	switch {
	case strings.Contains(r.Path, "{"):
		pat := strings.Split(r.Path, "/")
		got := strings.Split(path, "/")
		params := map[string]string{}
		lits, catchAll := 0, false
		for i, p := range pat {
			if strings.HasSuffix(p, "...}") {
				if len(got) < len(pat) {
					return nil, nil, false
				}
				params[p[1:len(p)-4]] = strings.Join(got[i:], "/")
				catchAll = true
				break
			}
			if i >= len(got) {
				return nil, nil, false
			}
			if strings.HasPrefix(p, "{") {
				if got[i] == "" {
					return nil, nil, false
				}
				params[p[1:len(p)-1]] = got[i]
				continue
			}
			if got[i] != p {
				return nil, nil, false
			}
			if i > 0 {
				lits++
			}
		}
		if !catchAll && len(got) != len(pat) {
			return nil, nil, false
		}
		notCatchAll := 1
		if catchAll {
			notCatchAll = 0
		}
		return []int{4, lits, notCatchAll}, params, true
	case r.Path != "":
		return []int{5, 0, 0}, nil, path == r.Path
	case r.PathPrefix != "":
		return []int{3, len(r.PathPrefix), 0}, nil, strings.HasPrefix(path, r.PathPrefix)
	case r.PathRegex != "":
		return []int{2, 0, 0}, nil, ref.res[r.PathRegex].MatchString(path)
	default:
		return []int{1, 0, 0}, nil, true
	}
}

func refConstraints(r Route, method string, h *fasthttp.RequestHeader) bool {
	if len(r.Methods) > 0 && !slices.ContainsFunc(r.Methods, func(m string) bool { return strings.ToUpper(m) == method }) {
		return false
	}
	for _, hm := range r.Headers {
		if h == nil {
			return false
		}
		v := string(h.Peek(hm.Name))
		if hm.Value == "*" && v == "" || hm.Value != "*" && v != hm.Value {
			return false
		}
	}
	return true
}

// satisfies reports whether route id matches the request at all, ignoring specificity.
func (ref *reference) satisfies(id int, method, host, path string, h *fasthttp.RequestHeader) bool {
	r := ref.routes[id]
	_, hostOK := refHost(r.Host, host)
	_, _, pathOK := ref.refPath(r, path)
	return hostOK && pathOK && refConstraints(r, method, h)
}

func (ref *reference) match(method, host, path string, h *fasthttp.RequestHeader) (int, map[string]string) {
	best, bestParams := -1, map[string]string(nil)
	var bestKey []int
	for i, r := range ref.routes {
		hostKey, ok := refHost(r.Host, host)
		if !ok {
			continue
		}
		pathKey, params, ok := ref.refPath(r, path)
		if !ok || !refConstraints(r, method, h) {
			continue
		}
		weight := len(r.Headers)
		if len(r.Methods) > 0 {
			weight++
		}
		key := slices.Concat(hostKey, pathKey, []int{weight})
		// Strictly greater only, so that on a tie the earlier route stays (rule 5).
		if best < 0 || slices.Compare(key, bestKey) > 0 {
			best, bestKey, bestParams = i, key, params
		}
	}
	return best, bestParams
}

// check runs both matchers and reports any disagreement.
func check(tb testing.TB, tab *Table, ref *reference, method, host, path string, h *fasthttp.RequestHeader) {
	tb.Helper()
	var params [filter.MaxParams]filter.Param
	n := -1
	got := tab.Match([]byte(method), []byte(host), []byte(path), h, &params, &n)
	want, wantParams := ref.match(method, host, path, h)
	if got >= 0 && !ref.satisfies(got, method, host, path, h) {
		tb.Fatalf("%q %q %q: route %d %+v does not match the request", method, host, path, got, ref.routes[got])
	}
	if got != want {
		tb.Fatalf("%q %q %q: got route %d, reference says %d", method, host, path, got, want)
	}
	if n < 0 || n > filter.MaxParams {
		tb.Fatalf("%q %q %q: param count %d", method, host, path, n)
	}
	gotParams := map[string]string{}
	for _, p := range params[:n] {
		gotParams[p.Key] = string(p.Value)
	}
	if len(wantParams) == 0 {
		wantParams = map[string]string{}
	}
	if !maps.Equal(gotParams, wantParams) {
		tb.Fatalf("%q %q %q: got params %v, reference says %v", method, host, path, gotParams, wantParams)
	}
}

// fuzzRoutes is a fixed table with every kind of route and overlaps between them.
var fuzzRoutes = []Route{
	{Name: "exact-host", Host: "api.example.com", Path: "/v1/users/me"},
	{Name: "exact-host-prefix", Host: "api.example.com", PathPrefix: "/v1/"},
	{Name: "exact-host-bare", Host: "API.example.com"},
	{Name: "wild", Host: "*.example.com", PathPrefix: "/"},
	{Name: "wild-deep", Host: "*.api.example.com", Path: "/v1/{x}"},
	{Name: "v6", Host: "[::1]", Path: "/"},
	{Name: "users", Path: "/v1/users/{id}"},
	{Name: "users-get", Path: "/v1/users/{id}", Methods: []string{"GET"}},
	{Name: "posts", Path: "/v1/users/{id}/posts/{post}"},
	{Name: "users-x-posts", Path: "/v1/{kind}/{id}/posts/{post}"},
	{Name: "files", Path: "/v1/files/{path...}"},
	{Name: "all", Path: "/{rest...}", Methods: []string{"DELETE"}},
	{Name: "health", Path: "/health"},
	{Name: "health-prod", Path: "/health", Headers: []Header{{Name: "X-Env", Value: "prod"}}},
	{Name: "env-any", PathPrefix: "/e", Headers: []Header{{Name: "x-env", Value: "*"}}},
	{Name: "v1", PathPrefix: "/v1"},
	{Name: "v1-slash", PathPrefix: "/v1/", Methods: []string{"POST", "put"}},
	{Name: "items", PathRegex: `/items/[0-9]+`},
	{Name: "items-post", PathRegex: `/items/.*`, Methods: []string{"POST"}},
	{Name: "catch", Methods: []string{"OPTIONS"}},
	{Name: "empty", Path: "/"},
}

func FuzzMatch(f *testing.F) {
	seeds := []struct{ method, host, path, env string }{
		{"GET", "api.example.com", "/v1/users/me", ""},
		{"GET", "API.EXAMPLE.COM:443", "/v1/users/42", ""},
		{"POST", "x.api.example.com", "/v1/users", ""},
		{"GET", "a.b.example.com", "/v1/files/a/b", "prod"},
		{"DELETE", "other.org", "/v1/users/42/posts/7", ""},
		{"PUT", "", "/v1/things/42/posts/7", ""},
		{"GET", "[::1]:8080", "/", ""},
		{"GET", "h", "/health", "prod"},
		{"GET", "h", "/env", "x"},
		{"POST", "h", "/items/12", ""},
		{"OPTIONS", "example.com.", "", ""},
		{"get", ".example.com", "//", ""},
		{"GET", strings.Repeat("a.", 150) + "example.com", "/v1/files/", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.host, s.path, s.env)
	}
	tab := mustCompile(f, fuzzRoutes)
	ref := newReference(fuzzRoutes)
	f.Fuzz(func(t *testing.T, method, host, path, env string) {
		var h *fasthttp.RequestHeader
		if env != "" {
			h = &fasthttp.RequestHeader{}
			h.Set("X-Env", env)
		}
		check(t, tab, ref, method, host, path, h)
	})
}

// TestAgreesWithReference compiles many random tables from a small vocabulary, so that routes
// collide often, and compares the table with the reference on random requests.
func TestAgreesWithReference(t *testing.T) {
	hosts := []string{"", "*", "a.com", "A.com", "*.a.com", "*.b.a.com", "b.a.com", "c.b.a.com", "*.c.b.a.com"}
	reqHosts := []string{"", "a.com", "b.a.com", "B.A.com:80", "c.b.a.com", "d.c.b.a.com", "x.a.com.", "z.org", "a.com:1"}
	segs := []string{"a", "b", "{p}", "{q}"}
	reqSegs := []string{"a", "b", "c", ""}
	methods := []string{"GET", "POST"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	randPath := func(vocab []string, params bool) string {
		var b strings.Builder
		n := 1 + rng.IntN(3)
		used := map[string]bool{}
		for i := 0; i < n; i++ {
			s := pick(vocab)
			if !params && strings.Contains(s, "{") || used[s] {
				s = "a"
			}
			used[s] = true
			b.WriteString("/" + s)
		}
		if params && rng.IntN(4) == 0 {
			b.WriteString("/{rest...}")
		}
		return b.String()
	}
	for table := 0; table < 2000; table++ {
		routes := make([]Route, 1+rng.IntN(20))
		for i := range routes {
			r := Route{Name: fmt.Sprint(i), Host: pick(hosts)}
			switch rng.IntN(5) {
			case 0:
				r.Path = randPath(segs, false)
			case 1:
				r.Path = randPath(segs, true)
			case 2:
				p := randPath(segs, false)
				r.PathPrefix = p[:min(len(p), 1+rng.IntN(4))]
			case 3:
				r.PathRegex = pick([]string{"/a.*", "/[ab]/b", "/.*"})
			}
			if rng.IntN(3) == 0 {
				r.Methods = []string{pick(methods)}
			}
			if rng.IntN(4) == 0 {
				r.Headers = []Header{{Name: "X-K", Value: pick([]string{"1", "*"})}}
			}
			routes[i] = r
		}
		tab, err := Compile(routes)
		if err != nil {
			t.Fatalf("Compile(%+v): %v", routes, err)
		}
		ref := newReference(routes)
		for range 100 {
			var h *fasthttp.RequestHeader
			if v := pick([]string{"", "1", "2"}); v != "" {
				h = &fasthttp.RequestHeader{}
				h.Set("X-K", v)
			}
			path := randPath(reqSegs, false)
			if rng.IntN(8) == 0 {
				path += "/"
			}
			check(t, tab, ref, pick(methods), pick(reqHosts), path, h)
		}
	}
}
