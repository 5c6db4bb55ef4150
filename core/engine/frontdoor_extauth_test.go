package engine

// End-to-end tests of the extauth filter through the gateway, with a loopback auth service and
// the recording upstream: a denial returns the service's answer and the upstream receives
// nothing; an allow carries the service's identity header upstream, never the client's.

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestFrontdoorExtAuth(t *testing.T) {
	var calls atomic.Int32
	var lastSeen atomic.Value
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	auth := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		calls.Add(1)
		lastSeen.Store(rc.Request.Header.String())
		switch string(rc.Request.Header.Peek("Authorization")) {
		case "Bearer good":
			rc.Response.Header.Set("X-User-Id", "42")
		case "Bearer slow":
			time.Sleep(500 * time.Millisecond)
		default:
			rc.SetStatusCode(401)
			rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="api"`)
			rc.Response.Header.Set("X-Internal-Trace", "t-1")
			rc.SetContentType("application/json")
			rc.SetBodyString(`{"error":"invalid token"}`)
		}
	}}
	go auth.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = auth.Shutdown() })

	routes := fmt.Sprintf(`
  - name: api
    match: { path_prefix: /api/ }
    upstream: be
    filters:
      - extauth:
          url: http://%s/check
          timeout: 100ms
          upstream_headers: [X-User-Id]
          cache: { ttl: 1m, key: "header:Authorization" }
`, ln.Addr())
	rec, addr := startFilterGateway(t, "", routes)

	t.Run("denied", func(t *testing.T) {
		resp := roundTrip(t, addr, "GET /api/orders HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer bad\r\nX-User-Id: 1\r\n\r\n")
		if got := rec.take(); len(got) != 0 {
			t.Errorf("upstream received %q, want nothing", clipAll(got))
		}
		if resp.StatusCode() != 401 || string(resp.Body()) != `{"error":"invalid token"}` ||
			string(resp.Header.Peek("WWW-Authenticate")) != `Bearer realm="api"` || resp.Header.Peek("X-Internal-Trace") != nil {
			t.Errorf("client got %d %q, headers:\n%s", resp.StatusCode(), resp.Body(), resp.Header.String())
		}
		seen, _ := lastSeen.Load().(string)
		for _, want := range []string{"Authorization: Bearer bad", "X-Forwarded-Method: GET", "X-Forwarded-Uri: /api/orders", "X-Forwarded-Host: gw.test"} {
			if !strings.Contains(seen, want) {
				t.Errorf("auth service did not see %q:\n%s", want, seen)
			}
		}
		if strings.Contains(seen, "X-User-Id") {
			t.Errorf("auth service saw the client's X-User-Id:\n%s", seen)
		}
	})

	t.Run("allowed, identity from the service only", func(t *testing.T) {
		before := calls.Load()
		for i := 0; i < 2; i++ {
			resp := roundTrip(t, addr, "GET /api/orders HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer good\r\n"+
				"X-User-Id: 1\r\nx-user-id: 2\r\n\r\n")
			got := rec.take()
			if resp.StatusCode() != 200 || len(got) != 1 {
				t.Fatalf("status %d, upstream got %d requests", resp.StatusCode(), len(got))
			}
			if field(got[0], "X-User-Id") != "42" || strings.Count(strings.ToLower(got[0]), "x-user-id:") != 1 {
				t.Errorf("upstream request:\n%s", got[0])
			}
		}
		if n := calls.Load() - before; n != 1 {
			t.Errorf("auth service called %d times for two requests with one credential, want 1 (cache)", n)
		}
	})

	t.Run("timeout fails closed", func(t *testing.T) {
		resp := roundTrip(t, addr, "GET /api/orders HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer slow\r\n\r\n")
		if got := rec.take(); len(got) != 0 {
			t.Errorf("upstream received %q, want nothing", clipAll(got))
		}
		if resp.StatusCode() != 503 {
			t.Errorf("status %d, want 503", resp.StatusCode())
		}
	})
}
