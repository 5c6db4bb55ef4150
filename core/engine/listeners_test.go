package engine

// End-to-end tests of server.listen with several listeners in one engine: plain and TLS side by
// side, the PROXY protocol (the client address it carries is the one filters, trusted_proxies
// and X-Forwarded-For see; a connection without a valid header, or from a peer that may not
// send one, is closed unread while the gateway keeps serving), and redirect_https.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/weir-gateway/weir/config"
)

// engineFromYAML writes src to dir/weir.yaml and builds an engine from it, not serving yet.
func engineFromYAML(t *testing.T, dir, src string, log zerolog.Logger) *Engine {
	t.Helper()
	path := filepath.Join(dir, "weir.yaml")
	writeFile(t, path, src)
	e, err := New(path, log)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// serveListeners binds and serves every listener of e until the test ends, and returns their
// addresses ("127.0.0.1:port") in config order.
func serveListeners(t *testing.T, e *Engine) []string {
	t.Helper()
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.ServeListeners() }()
	t.Cleanup(func() {
		_ = e.Shutdown(t.Context())
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var addrs []string
	for _, u := range e.ListenerURLs() {
		_, a, _ := strings.Cut(u, "://")
		addrs = append(addrs, a)
	}
	return addrs
}

// Listener indexes of listenersConfig.
const (
	lnPlain = iota
	lnTLS
	lnV1
	lnV2
	lnAny
	lnOtherLB // proxy_protocol from an address the tests do not connect from
	lnRedirect
	lnRedirect301
	lnTLSHTTP1 // TLS, protocols: [http1]
	lnH2C      // plain, protocols: [http1, h2c]
)

const listenersConfig = `
server:
  admin: ""
  read_timeout: 2s
  # 203.0.113.0/24 is a proxy in front of the balancer: its X-Forwarded-For is believed.
  trusted_proxies: [203.0.113.0/24]
  listen:
    - "127.0.0.1:0"
    - { address: "127.0.0.1:0", tls: { certificates: [ { cert_file: %[1]q, key_file: %[2]q } ] } }
    - { address: "127.0.0.1:0", proxy_protocol: v1, proxy_protocol_from: [127.0.0.0/8], proxy_protocol_timeout: 300ms }
    - { address: "127.0.0.1:0", proxy_protocol: v2, proxy_protocol_from: ["127.0.0.1"], proxy_protocol_timeout: 300ms }
    - { address: "127.0.0.1:0", proxy_protocol: any, proxy_protocol_from: [127.0.0.1, "::1"], proxy_protocol_timeout: 300ms }
    - { address: "127.0.0.1:0", proxy_protocol: any, proxy_protocol_from: [192.0.2.1] }
    - { address: "127.0.0.1:0", redirect_https: true }
    - { address: "127.0.0.1:0", redirect_https: true, redirect_status: 301 }
    - { address: "127.0.0.1:0", protocols: [http1], tls: { certificates: [ { cert_file: %[1]q, key_file: %[2]q } ] } }
    - { address: "127.0.0.1:0", protocols: [http1, h2c] }
access_log: { enabled: false }
upstreams:
  be: { targets: [%[3]q], timeout: 2s, idle_timeout: 5s }
routes:
  - name: internal
    match: { path_prefix: /internal }
    upstream: be
    filters: [ { ipfilter: { allow: [10.0.0.0/8, "2001:db8::/32"] } } ]
  - { name: all, upstream: be }
`

// startListeners runs listenersConfig in front of a recording upstream; it returns the
// listeners' addresses and the TLS client config that trusts the gateway's certificate.
func startListeners(t *testing.T) (*recorder, []string, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir, "gw", "gw.test")
	rec := startRecorder(t)
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(listenersConfig, cert, key, rec.ln.Addr().String())), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	addrs := serveListeners(t, e)
	if len(addrs) != lnH2C+1 {
		t.Fatalf("listening on %v", addrs)
	}
	return rec, addrs, &tls.Config{ServerName: "gw.test", RootCAs: pool}
}

var xffField = regexp.MustCompile(`(?m)^X-Forwarded-For: (.*)\r$`)

// forwardedFor returns the X-Forwarded-For the upstream received in the one request it got.
func forwardedFor(t *testing.T, got []string) string {
	t.Helper()
	if len(got) != 1 {
		t.Fatalf("upstream received %d requests, want 1", len(got))
	}
	m := xffField.FindStringSubmatch(got[0])
	if m == nil {
		t.Fatalf("no X-Forwarded-For in %q", got[0])
	}
	return m[1]
}

// TestListenersPlainAndTLS: one engine serves a plain and a TLS listener at once, and tells the
// upstream which one a request came by.
func TestListenersPlainAndTLS(t *testing.T) {
	rec, addrs, tcfg := startListeners(t)
	ex, got := exchangeOnce(t, rec, addrs[lnPlain], "GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	if ex.status != 200 || len(got) != 1 || !strings.Contains(got[0], "X-Forwarded-Proto: http\r\n") {
		t.Errorf("plain: status %d, upstream got %q", ex.status, got)
	}

	tcfg.NextProtos = []string{"http/1.1"}
	conn, err := tls.Dial("tcp", addrs[lnTLS], tcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN %q, want http/1.1", p)
	}
	ex = send(t, conn, bufio.NewReader(conn), "GET /b HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	got = rec.take()
	if ex.status != 200 || len(got) != 1 || !strings.Contains(got[0], "X-Forwarded-Proto: https\r\n") {
		t.Errorf("tls: status %d, upstream got %q", ex.status, got)
	}
	// A TLS handshake on the plain listener is answered 400 at once, as before.
	if _, err := tls.Dial("tcp", addrs[lnPlain], tcfg); err == nil {
		t.Error("TLS handshake on the plain listener succeeded")
	}
}

func proxyV1(src string) string {
	ip, _, _ := net.SplitHostPort(src)
	fam := "TCP4"
	if strings.Contains(ip, ":") {
		fam = "TCP6"
	}
	dst := "192.0.2.10"
	if fam == "TCP6" {
		dst = "2001:db8::10"
	}
	_, port, _ := net.SplitHostPort(src)
	return fmt.Sprintf("PROXY %s %s %s %s 443\r\n", fam, ip, dst, port)
}

func proxyV2(t *testing.T, cmd proxyproto.ProtocolVersionAndCommand, src string) string {
	t.Helper()
	sa, err := net.ResolveTCPAddr("tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	h := proxyproto.HeaderProxyFromAddrs(2, sa, &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 443})
	h.Command = cmd
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProxyProtocolClientAddress: the source address of a PROXY header is the client: an ip
// filter decides on it and X-Forwarded-For carries it, and a proxy in trusted_proxies behind
// the balancer has its X-Forwarded-For believed exactly as if it had connected directly.
func TestProxyProtocolClientAddress(t *testing.T) {
	rec, addrs, _ := startListeners(t)
	get := func(path, extra string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: gw.test\r\n" + extra + "\r\n"
	}
	tests := []struct {
		name     string
		listener int
		header   string
		request  string
		status   int
		xff      string
	}{
		{"v1 client in the allow list", lnV1, proxyV1("10.1.2.3:5555"), get("/internal", ""), 200, "10.1.2.3"},
		{"v1 TCP6", lnV1, proxyV1("[2001:db8::7]:5555"), get("/internal", ""), 200, "2001:db8::7"},
		{"v1 client outside the allow list", lnV1, proxyV1("198.51.100.4:5555"), get("/internal", ""), 403, ""},
		{"v2 client", lnV2, proxyV2(t, proxyproto.PROXY, "10.4.5.6:40000"), get("/internal", ""), 200, "10.4.5.6"},
		{"v2 on an any listener", lnAny, proxyV2(t, proxyproto.PROXY, "10.4.5.7:40000"), get("/internal", ""), 200, "10.4.5.7"},
		{"v1 on an any listener", lnAny, proxyV1("10.4.5.8:40000"), get("/internal", ""), 200, "10.4.5.8"},
		// A balancer's own health check: the connection's address stands.
		{"v2 LOCAL", lnV2, proxyV2(t, proxyproto.LOCAL, "10.4.5.6:40000"), get("/x", ""), 200, "127.0.0.1"},
		{"spoofed XFF behind the balancer", lnV1, proxyV1("198.51.100.4:5555"),
			get("/internal", "X-Forwarded-For: 10.0.0.1\r\n"), 403, ""},
		{"spoofed XFF replaced", lnV1, proxyV1("198.51.100.4:5555"),
			get("/x", "X-Forwarded-For: 10.0.0.1\r\n"), 200, "198.51.100.4"},
		{"trusted proxy behind the balancer", lnV2, proxyV2(t, proxyproto.PROXY, "203.0.113.7:40000"),
			get("/internal", "X-Forwarded-For: 10.7.7.7\r\n"), 200, "10.7.7.7, 203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, got := exchangeOnce(t, rec, addrs[tt.listener], tt.header+tt.request)
			if ex.status != tt.status {
				t.Fatalf("status %d, want %d", ex.status, tt.status)
			}
			if tt.status != 200 {
				if len(got) != 0 {
					t.Errorf("upstream received %q, want nothing", clipAll(got))
				}
				return
			}
			if xff := forwardedFor(t, got); xff != tt.xff {
				t.Errorf("X-Forwarded-For %q, want %q", xff, tt.xff)
			}
		})
	}
}

// refused reports whether the gateway closed conn without answering.
func refused(t *testing.T, conn net.Conn) bool {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("connection still open after 3s (read %q)", b)
		return false
	}
	if len(b) > 0 {
		t.Errorf("answered %q, want the connection closed unanswered", b)
		return false
	}
	return true
}

// TestProxyProtocolRefused: a connection whose PROXY header is missing, malformed,
// truncated, of a version the listener does not take, or too slow, or that comes from a peer
// not allowed to send one, is closed unanswered and forwards nothing; the gateway keeps
// serving. A PROXY header sent to a listener without proxy_protocol is a bad request, never a
// client address.
func TestProxyProtocolRefused(t *testing.T) {
	rec, addrs, _ := startListeners(t)
	req := "GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	v2 := proxyV2(t, proxyproto.PROXY, "10.4.5.6:40000")
	tests := []struct {
		name     string
		listener int
		send     string
		wait     bool // send, then stay silent: the header timeout must close it
	}{
		{"no header", lnV1, req, false},
		{"no header on v2", lnV2, req, false},
		{"bad address", lnV1, "PROXY TCP4 10.0.0.999 192.0.2.10 5555 443\r\n" + req, false},
		{"bad family", lnV1, "PROXY TCP5 10.0.0.1 192.0.2.10 5555 443\r\n" + req, false},
		{"address family mismatch", lnV1, "PROXY TCP4 2001:db8::1 192.0.2.10 5555 443\r\n" + req, false},
		{"port out of range", lnV1, "PROXY TCP4 10.0.0.1 192.0.2.10 70000 443\r\n" + req, false},
		{"LF only", lnV1, "PROXY TCP4 10.0.0.1 192.0.2.10 5555 443\n" + req, false},
		{"too long", lnV1, "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n" + req, false},
		{"v1 truncated", lnV1, "PROXY TCP4 10.0.0.1 192.0", true},
		{"v2 truncated", lnV2, v2[:20], true},
		{"v2 bad length", lnV2, v2[:14] + "\xff\xff" + v2[16:] + req, true},
		{"signature only", lnAny, "\r\n\r\n\x00\r\nQUIT\n", true},
		{"silent", lnAny, "", true},
		{"v2 on a v1 listener", lnV1, v2 + req, false},
		{"v1 on a v2 listener", lnV2, proxyV1("10.0.0.1:5555") + req, false},
		{"valid header from a peer not allowed to send one", lnOtherLB, proxyV1("10.0.0.1:5555") + req, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, _ := dial(t, addrs[tt.listener])
			if _, err := io.WriteString(conn, tt.send); err != nil {
				t.Logf("write: %v", err) // refused before everything was written
			}
			if refused(t, conn) {
				if got := rec.take(); len(got) != 0 {
					t.Errorf("upstream received %q, want nothing", clipAll(got))
				}
			}
		})
	}
	// The gateway still serves every listener.
	for _, l := range []struct {
		i      int
		header string
	}{{lnV1, proxyV1("10.0.0.1:1")}, {lnV2, v2}, {lnAny, v2}, {lnPlain, ""}} {
		if ex, got := exchangeOnce(t, rec, addrs[l.i], l.header+req); ex.status != 200 || len(got) != 1 {
			t.Errorf("listener %d after the refusals: status %d, upstream got %d", l.i, ex.status, len(got))
		}
	}

	// Without proxy_protocol a PROXY header is not honoured: it is not a request line.
	for _, h := range []string{proxyV1("10.0.0.1:5555"), v2} {
		ex, got := exchangeOnce(t, rec, addrs[lnPlain], h+"GET /internal HTTP/1.1\r\nHost: gw.test\r\n\r\n")
		if ex.status != 400 || len(got) != 0 {
			t.Errorf("PROXY header %q on a plain listener: status %d, upstream got %q; want 400 and nothing", h, ex.status, clipAll(got))
		}
	}
}

// TestRedirectHTTPS: a redirect_https listener answers every plain request with a redirect to
// the same host, path and query on the TLS listener's port, and forwards nothing. The Host
// cannot take the redirect elsewhere: the edge refuses what is not a host before the redirect
// runs, and the path cannot become an authority.
func TestRedirectHTTPS(t *testing.T) {
	rec, addrs, _ := startListeners(t)
	_, tlsPort, _ := net.SplitHostPort(addrs[lnTLS])
	base := "https://gw.test:" + tlsPort
	tests := []struct {
		name     string
		listener int
		request  string
		status   int
		location string
	}{
		{"path and query", lnRedirect, "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/a/b?x=1&y=%20"},
		{"301", lnRedirect301, "GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\n", 301, base + "/a"},
		{"POST keeps 308", lnRedirect, "POST /form HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2\r\n\r\nab", 308, base + "/form"},
		{"root", lnRedirect, "GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/"},
		{"the Host's port is replaced", lnRedirect, "GET /p HTTP/1.1\r\nHost: gw.test:8080\r\n\r\n", 308, base + "/p"},
		{"IPv6 host", lnRedirect, "GET /p HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 308, "https://[::1]:" + tlsPort + "/p"},
		{"escaped path stays escaped", lnRedirect, "GET /a%2Fb/%E2%82%AC HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/a%2Fb/%E2%82%AC"},
		{"double slash stays a path", lnRedirect, "GET //evil.test/x HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "//evil.test/x"},
		{"backslash stays a path", lnRedirect, "GET /\\evil.test HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/%5Cevil.test"},
		{"absolute-form: its authority is the host", lnRedirect,
			"GET http://gw2.test/p?q=1 HTTP/1.1\r\nHost: gw2.test\r\n\r\n", 308, "https://gw2.test:" + tlsPort + "/p?q=1"},
		{"absolute-form with userinfo", lnRedirect, "GET http://evil.test@gw.test/ HTTP/1.1\r\nHost: gw.test\r\n\r\n", 400, ""},
		{"Host with userinfo", lnRedirect, "GET / HTTP/1.1\r\nHost: evil.test@gw.test\r\n\r\n", 400, ""},
		{"Host with a path", lnRedirect, "GET / HTTP/1.1\r\nHost: evil.test/gw.test\r\n\r\n", 400, ""},
		{"Host with a backslash", lnRedirect, "GET / HTTP/1.1\r\nHost: evil.test\\gw.test\r\n\r\n", 400, ""},
		{"Host folded onto a second line", lnRedirect, "GET / HTTP/1.1\r\nHost: gw.test\r\n evil.test\r\n\r\n", 400, ""},
		{"Host with an encoded CRLF", lnRedirect, "GET / HTTP/1.1\r\nHost: gw.test%0d%0aSet-Cookie:x\r\n\r\n", 400, ""},
		// Still encoded in Location: no header can be split off.
		{"path with an encoded CRLF", lnRedirect, "GET /a%0d%0aSet-Cookie:x HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/a%0d%0aSet-Cookie:x"},
		{"query with an encoded CRLF", lnRedirect, "GET /a?b=%0d%0aX:y HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/a?b=%0d%0aX:y"},
		{"raw bytes in the path escaped", lnRedirect, "GET /a\"<b> HTTP/1.1\r\nHost: gw.test\r\n\r\n", 308, base + "/a%22%3Cb%3E"},
		{"two Hosts", lnRedirect, "GET / HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\n\r\n", 400, ""},
		{"no Host", lnRedirect, "GET / HTTP/1.1\r\n\r\n", 400, ""},
		// The plain listener without redirect_https routes as usual.
		{"plain listener routes", lnPlain, "GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\n", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, br := dial(t, addrs[tt.listener])
			if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(conn, tt.request); err != nil {
				t.Fatal(err)
			}
			var resp fasthttp.Response
			if err := resp.Read(br); err != nil {
				t.Fatal(err)
			}
			got := rec.take()
			if resp.StatusCode() != tt.status {
				t.Fatalf("status %d, want %d (Location %q)", resp.StatusCode(), tt.status, resp.Header.Peek("Location"))
			}
			if loc := string(resp.Header.Peek("Location")); loc != tt.location {
				t.Errorf("Location %q, want %q", loc, tt.location)
			}
			want := 0
			if tt.status == 200 {
				want = 1
			}
			if len(got) != want {
				t.Errorf("upstream received %q, want %d requests", clipAll(got), want)
			}
		})
	}
}

// TestRestartOnlyListeners: a reload that changes any listener setting is reported as
// restart-only, whichever form server.listen was written in.
func TestRestartOnlyListeners(t *testing.T) {
	const rest = "\nupstreams: { demo: { kind: echo } }\nroutes: [ { name: r, upstream: demo } ]\n"
	parse := func(server string) *config.Config {
		t.Helper()
		c, err := parseConfig("weir.yaml", []byte("server: { admin: \"\", "+server+" }"+rest))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct{ a, b, want string }{
		{`listen: ":80"`, `listen: ":80"`, ""},
		{`listen: ":80"`, `listen: [":80"]`, ""},
		{`listen: ":80"`, `listen: ":81"`, "server.listen"},
		{`listen: [":80", ":81"]`, `listen: [":80"]`, "server.listen"},
		{`listen: [{ address: ":80", protocols: [http1, h2c] }]`, `listen: [":80"]`, "server.listen"},
		{`listen: [{ address: ":80", proxy_protocol: v1, proxy_protocol_from: [10.0.0.1] }]`,
			`listen: [{ address: ":80", proxy_protocol: v1, proxy_protocol_from: [10.0.0.2] }]`, "server.listen"},
		{`listen: ":80", trusted_proxies: [10.0.0.1]`, `listen: ":80"`, ""}, // per snapshot
	}
	for _, tt := range tests {
		if got := strings.Join(RestartOnly(parse(tt.a), parse(tt.b)), ","); got != tt.want {
			t.Errorf("%s → %s: RestartOnly %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestListenersProtocols: each listener speaks the protocols it lists: h2 by ALPN on a TLS
// listener by default, HTTP/1.1 only where it says so, h2c with prior knowledge only on the
// plain listener that lists it.
func TestListenersProtocols(t *testing.T) {
	rec, addrs, tcfg := startListeners(t)
	for _, tt := range []struct {
		name     string
		listener int
		want     string
	}{{"default tls", lnTLS, "h2"}, {"tls with protocols [http1]", lnTLSHTTP1, "http/1.1"}} {
		c := tcfg.Clone()
		c.NextProtos = []string{"h2", "http/1.1"}
		conn, err := tls.Dial("tcp", addrs[tt.listener], c)
		if err != nil {
			t.Fatal(err)
		}
		if p := conn.ConnectionState().NegotiatedProtocol; p != tt.want {
			t.Errorf("%s: ALPN %q, want %q", tt.name, p, tt.want)
		}
		conn.Close()
	}

	h2 := func(plain bool) *http.Client {
		tr := &http2.Transport{TLSClientConfig: tcfg.Clone()}
		if plain {
			tr.AllowHTTP = true
			tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	for _, tt := range []struct {
		name, url string
		plain     bool
		proto     string // X-Forwarded-Proto the upstream sees; "" when refused
	}{
		{"h2 on the tls listener", "https://" + addrs[lnTLS] + "/h2", false, "https"},
		{"h2c on the h2c listener", "http://" + addrs[lnH2C] + "/h2c", true, "http"},
		{"h2c on a plain listener without it", "http://" + addrs[lnPlain] + "/h2c", true, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := h2(tt.plain).Get(tt.url)
			got := rec.take()
			if tt.proto == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("status %d, want the connection refused", resp.StatusCode)
				}
				if len(got) != 0 {
					t.Errorf("upstream received %q", clipAll(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || len(got) != 1 ||
				!strings.Contains(got[0], "X-Forwarded-Proto: "+tt.proto+"\r\n") {
				t.Errorf("status %d over %s, upstream got %q", resp.StatusCode, resp.Proto, clipAll(got))
			}
		})
	}
	// HTTP/1.1 still works on the h2c listener.
	if ex, got := exchangeOnce(t, rec, addrs[lnH2C], "GET /h1 HTTP/1.1\r\nHost: gw.test\r\n\r\n"); ex.status != 200 || len(got) != 1 {
		t.Errorf("HTTP/1.1 on the h2c listener: status %d, upstream got %d", ex.status, len(got))
	}
}

// TestListenerTLSConfigErrors: certificate files resolve against the config file's directory,
// and listeners whose acme settings differ are refused (they would share one account).
func TestListenerTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	selfSigned(t, dir, "rel", "rel.test")
	tests := []struct{ name, listen, want string }{
		{"relative paths", `[ { address: "127.0.0.1:0", tls: { certificates: [ { cert_file: rel.pem, key_file: rel.key } ] } } ]`, ""},
		{"missing file", `[ { address: "127.0.0.1:0", tls: { certificates: [ { cert_file: nope.pem, key_file: rel.key } ] } } ]`,
			"server.listen[0].tls"},
		{"acme differs", `[ { address: "127.0.0.1:0", tls: { acme: { hosts: [a.test], agree_tos: true, storage: st } } },
		                   { address: "127.0.0.1:0", tls: { acme: { hosts: [b.test], agree_tos: true, storage: st } } } ]`,
			"server.listen[1].tls.acme: differs from server.listen[0].tls.acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "weir.yaml")
			src := "server: { admin: \"\", listen: " + tt.listen + " }\nupstreams: { demo: { kind: echo } }\nroutes: [ { name: r, upstream: demo } ]\n"
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := New(path, zerolog.Nop())
			if err == nil {
				_ = e.Shutdown(t.Context())
			}
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkRedirectHTTPS is a request answered by a redirect_https listener: the edge checks,
// then the redirect filter's Location, with no allocation.
func BenchmarkRedirectHTTPS(b *testing.B) {
	dir := b.TempDir()
	cert, key, _ := selfSigned(b, dir, "gw", "gw.test")
	cfg, err := parseConfig("bench.yaml", []byte(fmt.Sprintf(`
server:
  admin: ""
  listen:
    - { address: "127.0.0.1:0", redirect_https: true }
    - { address: "127.0.0.1:8443", tls: { certificates: [ { cert_file: %q, key_file: %q } ] } }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`, cert, key)))
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown(context.Background()) //nolint:errcheck
	var rc fasthttp.RequestCtx
	rc.Init2(nil, nil, false)
	b.ReportAllocs()
	for b.Loop() {
		rc.Request.Header.SetMethod("GET")
		rc.Request.Header.SetHost("gw.test")
		rc.Request.SetRequestURI("/a/b?c=d")
		e.handle(&rc, e.listeners[0])
	}
	if loc := string(rc.Response.Header.Peek("Location")); loc != "https://gw.test:8443/a/b?c=d" {
		b.Fatalf("Location %q", loc)
	}
}
