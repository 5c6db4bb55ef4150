package engine

// End-to-end tests of the ipfilter filter through the gateway: the client address it decides
// on is the one the edge resolved through server.trusted_proxies, so a spoofed
// X-Forwarded-For from an untrusted peer (every test client here connects from 127.0.0.1)
// gets nowhere. Every rejection checks that the upstream received nothing.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

const filterGatewayConfig = `
server:
  listen: "127.0.0.1:0"
  admin: ""
  drain_timeout: 2s
  read_timeout: 2s
%s
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, idle_timeout: 5s }
routes:
%s
`

// startFilterGateway runs a gateway with the given server settings (indented lines under
// server:) and routes (a YAML list) in front of a recording upstream named be.
func startFilterGateway(t *testing.T, server, routes string) (*recorder, string) {
	t.Helper()
	rec := startRecorder(t)
	cfg, err := parseConfig("frontdoor.yaml", []byte(fmt.Sprintf(filterGatewayConfig, server, rec.ln.Addr().String(), routes)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return rec, serve(t, e)
}

// exchangeOnce sends one raw request on a fresh connection and returns what the client got and
// what the upstream received.
func exchangeOnce(t *testing.T, rec *recorder, addr, raw string) (exchange, []string) {
	t.Helper()
	conn, br := dial(t, addr)
	ex := send(t, conn, br, raw)
	return ex, rec.take()
}

const ipfilterRoutes = `
  - name: internal
    match: { path_prefix: /internal }
    upstream: be
    filters:
      - ipfilter: { allow: [10.0.0.0/8, "2001:db8::/32"] }
  - name: local
    match: { path_prefix: /local }
    upstream: be
    filters:
      - ipfilter: { allow: [127.0.0.0/8] }
  - name: blocked
    match: { path_prefix: /blocked }
    upstream: be
    filters:
      - ipfilter: { deny: [127.0.0.1] }
`

func ipReq(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: gw.test\r\n" + extra + "\r\n"
}

func TestFrontdoorIPFilterUntrustedPeer(t *testing.T) {
	rec, addr := startFilterGateway(t, "", ipfilterRoutes)
	for _, tt := range []struct {
		name, path, headers string
		pass                bool
	}{
		{"spoofed XFF into an allow list", "/internal", "X-Forwarded-For: 10.0.0.1\r\n", false},
		{"spoofed XFF, two fields", "/internal", "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n", false},
		{"spoofed XFF, lower case", "/internal", "x-forwarded-for: 10.0.0.1\r\n", false},
		{"spoofed X-Real-IP", "/internal", "X-Real-IP: 10.0.0.1\r\n", false},
		{"spoofed Forwarded", "/internal", "Forwarded: for=10.0.0.1\r\n", false},
		{"spoofed v6 XFF", "/internal", "X-Forwarded-For: 2001:db8::1\r\n", false},
		{"no header", "/internal", "", false},
		{"the peer's own address", "/local", "X-Forwarded-For: 203.0.113.9\r\n", true},
		{"deny list ignores XFF", "/blocked", "X-Forwarded-For: 203.0.113.9\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ex, got := exchangeOnce(t, rec, addr, ipReq(tt.path, tt.headers))
			if tt.pass {
				if ex.status != 200 || len(got) != 1 {
					t.Fatalf("status %d, upstream got %d requests; want 200 and 1", ex.status, len(got))
				}
				return
			}
			if ex.status != 403 {
				t.Errorf("status %d, want 403", ex.status)
			}
			if len(got) != 0 {
				t.Errorf("upstream received %q, want nothing", clipAll(got))
			}
		})
	}
}

func TestFrontdoorIPFilterTrustedProxy(t *testing.T) {
	rec, addr := startFilterGateway(t, `  trusted_proxies: [127.0.0.1]`, ipfilterRoutes)
	for _, tt := range []struct {
		name, xff string
		pass      bool
	}{
		{"client behind the proxy", "10.0.0.1", true},
		{"nearest untrusted is the client", "10.0.0.1, 203.0.113.5", false},
		{"forged entry left of the client", "203.0.113.5, 10.0.0.1", true},
		{"two fields, the last one is nearest", "10.0.0.1\r\nX-Forwarded-For: 203.0.113.5", false},
		{"v6 client", "2001:db8::7", true},
		{"garbage ends the walk at the proxy", "10.0.0.1, not-an-ip", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ex, got := exchangeOnce(t, rec, addr, ipReq("/internal", "X-Forwarded-For: "+tt.xff+"\r\n"))
			if tt.pass {
				if ex.status != 200 || len(got) != 1 {
					t.Fatalf("status %d, upstream got %d requests; want 200 and 1", ex.status, len(got))
				}
				return
			}
			if ex.status != 403 || len(got) != 0 {
				t.Errorf("status %d, upstream got %q; want 403 and nothing", ex.status, clipAll(got))
			}
		})
	}

	// A chain of trusted proxies: every trusted hop is skipped, the first untrusted one decides.
	rec2, addr2 := startFilterGateway(t, `  trusted_proxies: [127.0.0.1, 10.0.0.0/8]`, ipfilterRoutes)
	ex, got := exchangeOnce(t, rec2, addr2, ipReq("/internal", "X-Forwarded-For: 203.0.113.5, 10.0.0.1\r\n"))
	if ex.status != 403 || len(got) != 0 {
		t.Errorf("through trusted hops: status %d, upstream got %q; want 403 and nothing", ex.status, clipAll(got))
	}
	ex, got = exchangeOnce(t, rec2, addr2, ipReq("/internal", "X-Forwarded-For: 10.9.9.9, 10.0.0.1\r\n"))
	if ex.status != 200 || len(got) != 1 || !strings.Contains(got[0], "GET /internal") {
		t.Errorf("all hops trusted: status %d, upstream got %q; want 200", ex.status, clipAll(got))
	}
}
