package engine

import (
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// FuzzRoutedPathIsForwarded: for any request-target, the path the router matched is the path
// the upstream is sent. The terminal records what the upstream writer would send (the URI's
// path and query, as prepareRequest takes them); matching that path again must pick the same
// route, and no target reaches the backend route with a path under the denied /admin.
func FuzzRoutedPathIsForwarded(f *testing.F) {
	for _, s := range []string{
		"/x", "/admin/../public", "/admin/%2e%2e/public", "//admin", "/%61dmin", "/admin%2f..",
		"http://app.test/admin/../x", "/a/./b//c?q=../d", "/caf\xc3\xa9", "/raw/a%2fb/../c", "/x/../raw/a",
	} {
		f.Add(s)
	}
	cfg, err := parseConfig("fuzz.yaml", []byte(`
access_log: { enabled: false }
upstreams: { be: { targets: ["127.0.0.1:1"] } }
routes:
  - { name: admin, match: { path_prefix: /admin }, upstream: be, filters: [ { respond: { status: 403 } } ] }
  - { name: raw, match: { path_prefix: /raw/ }, upstream: be, normalize_path: false }
  - { name: all, match: { path_prefix: / }, upstream: be }
`))
	if err != nil {
		f.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	s := e.cur.Load()
	var sent string
	var route string
	for i := range s.routes {
		s.routes[i].terminal = func(c *filter.Ctx) {
			uri := c.Request.URI()
			uri.DisablePathNormalizing = true
			sent, route = string(uri.PathOriginal()), c.Route
			c.SetStatusCode(200)
		}
	}
	f.Fuzz(func(t *testing.T, target string) {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("GET")
		rc.Request.Header.SetHost("app.test")
		rc.Request.SetRequestURI(target)
		sent, route = "", ""
		e.Handle(&rc)
		if route == "" {
			return // refused, or answered locally
		}
		id := s.table.Match([]byte("GET"), []byte("app.test"), []byte(sent), &rc.Request.Header, nil, nil)
		if route == "raw" {
			if len(sent) < 5 || sent[:5] != "/raw/" {
				t.Fatalf("%q: raw route forwarded %q", target, sent)
			}
			return
		}
		if id < 0 || s.routes[id].name != route {
			t.Fatalf("%q: routed to %q, but the forwarded path %q matches route %d", target, route, sent, id)
		}
	})
}
