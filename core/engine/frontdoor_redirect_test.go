package engine

// End-to-end tests of the redirect filter through the gateway: path parameters captured by the
// router fill the template, escapes in the path stay escaped in Location (an encoded CR LF is
// refused by the edge before any filter), and a redirect never reaches the upstream.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

const redirectRoutes = `
  - name: moved
    match: { path: "/users/{id}/files/{rest...}" }
    upstream: be
    filters:
      - redirect: { to: "https://api.example.com/v2/accounts/{id}/{rest}", status: 301 }
  - name: to-https
    match: { path_prefix: /shop }
    upstream: be
    filters:
      - redirect: { https: true }
  - name: local
    match: { path_prefix: /local }
    upstream: be
    filters:
      - redirect: { to: "/new{path}" }
`

func TestFrontdoorRedirect(t *testing.T) {
	rec, addr := startFilterGateway(t, "", redirectRoutes)
	for _, tt := range []struct {
		name, raw, location string
		status              int
	}{
		{"parameters", "GET /users/42/files/a/b.txt?v=2 HTTP/1.1\r\nHost: old.example\r\n\r\n", "https://api.example.com/v2/accounts/42/a/b.txt?v=2", 301},
		{"escapes stay escaped", "GET /users/a%20b%3fc/files/z HTTP/1.1\r\nHost: old.example\r\n\r\n", "https://api.example.com/v2/accounts/a%20b%3Fc/z", 301},
		{"encoded CR LF: refused by the edge", "GET /users/4%0d%0aX:%20y/files/z HTTP/1.1\r\nHost: old.example\r\n\r\n", "", 400},
		{"http to https, port dropped", "POST /shop/cart HTTP/1.1\r\nHost: shop.example:8080\r\nContent-Length: 0\r\n\r\n", "https://shop.example/shop/cart", 308},
		{"spoofed X-Forwarded-Proto is replaced by the edge", "GET /shop HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-Proto: https\r\n\r\n", "https://shop.example/shop", 308},
		{"absolute-form target: its host", "GET http://shop.example/shop?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n", "https://shop.example/shop?q=1", 308},
		{"relative, normal form path", "GET /local//evil.example/%2e%2e/x HTTP/1.1\r\nHost: a.example\r\n\r\n", "/new/local/x", 307},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := roundTrip(t, addr, tt.raw)
			if resp.StatusCode() != tt.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode(), tt.status, resp.Body())
			}
			if got := string(resp.Header.Peek("Location")); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			if got := rec.take(); len(got) != 0 {
				t.Errorf("the upstream saw %d requests", len(got))
			}
		})
	}

	// A request the edge refuses (a CR in the Host) never reaches the filter.
	resp := roundTrip(t, addr, "GET /shop HTTP/1.1\r\nHost: a.example\rX\r\n\r\n")
	if resp.StatusCode() != 400 || len(resp.Header.Peek("Location")) > 0 {
		t.Errorf("bad Host: status %d, Location %q", resp.StatusCode(), resp.Header.Peek("Location"))
	}
}

// TestRedirectHTTPSOverTLS: with https: true, a request that came over TLS is not redirected
// but proxied.
func TestRedirectHTTPSOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir, "a", "a.example.com")
	cfgText := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin: ""
  tls: { certificates: [ { cert_file: %q, key_file: %q } ] }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo, filters: [ { redirect: { https: true } } ] } ]
`, cert, key)
	e := engineFromYAML(t, dir, cfgText, zerolog.Nop())
	conn, err := tls.Dial("tcp", serveListeners(t, e)[0], &tls.Config{ServerName: "a.example.com", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /p HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 || len(resp.Header.Peek("Location")) > 0 {
		t.Fatalf("over TLS: status %d, Location %q; want the upstream's 200", resp.StatusCode(), resp.Header.Peek("Location"))
	}
}
