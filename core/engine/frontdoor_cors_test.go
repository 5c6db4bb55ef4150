package engine

// End-to-end tests of the cors filter through the gateway: preflights are answered by the
// gateway and never reach the upstream; other requests do, and their answers carry the policy's
// CORS headers in place of the upstream's.

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const corsRoutes = `
  - name: api
    match: { path_prefix: /api/ }
    upstream: be
    filters:
      - cors:
          allow_origins: ["https://app.example", "https://*.example.com"]
          allow_headers: [Content-Type, Authorization]
          allow_credentials: true
          max_age: 10m
`

// roundTrip sends raw on a fresh connection and returns the whole response.
func roundTrip(t *testing.T, addr, raw string) *fasthttp.Response {
	t.Helper()
	conn, br := dial(t, addr)
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp := &fasthttp.Response{}
	if err := resp.Read(br); err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

func TestFrontdoorCORS(t *testing.T) {
	rec, addr := startFilterGateway(t, "", corsRoutes)
	rec.setAnswer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nAccess-Control-Allow-Origin: *\r\nVary: Accept-Encoding\r\n\r\nok", "", false)

	for _, tt := range []struct {
		name     string
		raw      string
		status   int
		upstream int
		headers  map[string]string // "" means absent
	}{
		{"preflight allowed", "OPTIONS /api/orders HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://app.example\r\n" +
			"Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\n\r\n", 204, 0,
			map[string]string{
				"Access-Control-Allow-Origin":      "https://app.example",
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     "GET, HEAD, POST, PUT, PATCH, DELETE",
				"Access-Control-Allow-Headers":     "Content-Type, Authorization",
				"Access-Control-Max-Age":           "600",
				"Vary":                             "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			}},
		{"preflight, header names in lower case, pattern origin", "OPTIONS /api/orders HTTP/1.1\r\nHost: gw.test\r\norigin: https://shop.example.com\r\n" +
			"access-control-request-method: DELETE\r\n\r\n", 204, 0,
			map[string]string{"Access-Control-Allow-Origin": "https://shop.example.com"}},
		{"preflight from another origin", "OPTIONS /api/orders HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://evil.example\r\n" +
			"Access-Control-Request-Method: DELETE\r\n\r\n", 403, 0,
			map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Allow-Credentials": ""}},
		{"preflight, two labels under the pattern", "OPTIONS /api/orders HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://a.b.example.com\r\n" +
			"Access-Control-Request-Method: GET\r\n\r\n", 403, 0, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"preflight, duplicate Origin", "OPTIONS /api/orders HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://app.example\r\nOrigin: https://evil.example\r\n" +
			"Access-Control-Request-Method: GET\r\n\r\n", 403, 0, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"actual request, allowed", "GET /api/orders HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://app.example\r\n\r\n", 200, 1,
			map[string]string{
				"Access-Control-Allow-Origin":      "https://app.example",
				"Access-Control-Allow-Credentials": "true",
				"Vary":                             "Accept-Encoding, Origin",
			}},
		{"actual request, other origin", "GET /api/orders HTTP/1.1\r\nHost: gw.test\r\nOrigin: https://evil.example\r\n\r\n", 200, 1,
			map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": "", "Vary": "Accept-Encoding, Origin"}},
		{"no Origin", "GET /api/orders HTTP/1.1\r\nHost: gw.test\r\n\r\n", 200, 1,
			map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Accept-Encoding, Origin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := roundTrip(t, addr, tt.raw)
			got := rec.take()
			if resp.StatusCode() != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode(), tt.status)
			}
			if len(got) != tt.upstream {
				t.Errorf("upstream received %d requests (%q), want %d", len(got), clipAll(got), tt.upstream)
			}
			for k, w := range tt.headers {
				var vals []string
				for _, v := range resp.Header.PeekAll(k) {
					vals = append(vals, string(v))
				}
				if w == "" && len(vals) > 0 || w != "" && strings.Join(vals, "|") != w {
					t.Errorf("%s: got %q, want %q", k, vals, w)
				}
			}
		})
	}
}
