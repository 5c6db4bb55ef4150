package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"

	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// h2Config has routes with built-in filters (headers, apikey with a consumer, a request
// body read by the echo upstream) and an http-wasm plugin, in front of the echo upstream and
// the recording backend.
const h2Config = `
server:
  listen: "127.0.0.1:0"
  admin: ""
  drain_timeout: 5s
  plugin_cache_dir: "off"
  http2: { enabled: true, h2c: true %s }
%s
access_log: { enabled: false }
upstreams:
  echo: { kind: echo }
  rec: { targets: [%q], retries: { attempts: 0 } }
plugins:
  hello: { file: hello.wasm, timeout: 50ms, memory_mb: 1 }
consumers:
  - name: alice
    credentials: { apikeys: [ { sha256: %q } ] }
routes:
  - name: headers
    match: { path_prefix: /h }
    upstream: echo
    filters:
      - headers: { request: { set: { X-Tag: tagged } }, response: { set: { X-Resp: yes } } }
  - name: key
    match: { path_prefix: /key }
    upstream: echo
    filters: [ apikey ]
  - name: wasm
    match: { path: /hello }
    upstream: echo
    filters: [ hello ]
  - name: rec
    match: { path_prefix: /rec }
    upstream: rec
  - name: direct
    match: { path: /direct }
    upstream: echo
    filters: [ test-stream-answer ]
`

// streamAnswer answers on the HTTP/2 stream itself, with a trailer, as a gRPC terminal would;
// on HTTP/1.1 it replies through the Ctx.
type streamAnswer struct{}

func (streamAnswer) OnRequest(c *filter.Ctx) filter.Status {
	s := edge.StreamOf(c.RequestCtx)
	if s == nil {
		return c.Reply(200, []byte("via ctx"))
	}
	s.W.Header().Set("Trailer", "X-Done")
	s.W.WriteHeader(203)
	_, _ = io.WriteString(s.W, "on the stream")
	s.W.Header().Set("X-Done", "yes")
	s.Answered = true
	return filter.Stop
}

func (streamAnswer) OnResponse(*filter.Ctx) {}

func init() {
	filter.Register("test-stream-answer", func(filter.Env, filter.Decoder) (filter.Filter, error) {
		return streamAnswer{}, nil
	})
}

type h2Gateway struct {
	addr string
	rec  *recorder
	pool *x509.CertPool // set when the listener serves TLS
	e    *Engine
}

// startH2 runs a gateway on h2Config; extra goes into server.http2, tlsBlock into server.
func startH2(t *testing.T, extra string, withTLS bool) *h2Gateway {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.wasm"), wasmtest.Hello(), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &h2Gateway{rec: startRecorder(t)}
	tlsBlock := ""
	if withTLS {
		var cf, kf string
		cf, kf, g.pool = selfSigned(t, dir, "gw", "gw.example.com")
		tlsBlock = fmt.Sprintf("  tls: { certificates: [ { cert_file: %q, key_file: %q } ] }", cf, kf)
	}
	src := fmt.Sprintf(h2Config, extra, tlsBlock, g.rec.ln.Addr().String(), sha256Hex("alice-key"))
	g.e = engineFromYAML(t, dir, src, zerolog.Nop())
	if !withTLS {
		g.addr = serve(t, g.e)
		return g
	}
	g.addr = serveListeners(t, g.e)[0]
	return g
}

// client returns an HTTP/2-only client for the gateway: h2c with prior knowledge, or h2 by
// ALPN over TLS.
func (g *h2Gateway) client(t *testing.T) *http.Client {
	tr := &http2.Transport{}
	if g.pool == nil {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
	} else {
		tr.TLSClientConfig = &tls.Config{RootCAs: g.pool, ServerName: "gw.example.com"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (g *h2Gateway) url(path string) string {
	if g.pool != nil {
		return "https://gw.example.com" + path
	}
	return "http://" + g.addr + path
}

type h2Case struct {
	name, method, path string
	header             map[string]string
	body               string
	status             int
	has                []string // in the body
	respHeader         [2]string
}

var h2Cases = []h2Case{
	{name: "headers filter", method: "GET", path: "/h/x?q=1", status: 200,
		has: []string{`["X-Tag","tagged"]`, `"path":"/h/x"`, `"query":"q=1"`}, respHeader: [2]string{"X-Resp", "yes"}},
	{name: "apikey refuses", method: "GET", path: "/key", status: 401},
	{name: "apikey admits", method: "GET", path: "/key", header: map[string]string{"X-Api-Key": "alice-key"}, status: 200,
		has: []string{`["X-Consumer-Name","alice"]`}},
	{name: "consumer header from client stripped", method: "GET", path: "/h", header: map[string]string{"X-Consumer-Name": "mallory"},
		status: 200},
	{name: "http-wasm plugin", method: "GET", path: "/hello", status: 200, has: []string{`["X-Wasm","hello from a WebAssembly plugin"]`}},
	{name: "request body", method: "POST", path: "/h", body: strings.Repeat("b", 100000), status: 200, has: []string{`"body_size":100000`}},
	{name: "no route", method: "GET", path: "/nowhere", status: 404},
	{name: "method not allowed", method: "TRACE", path: "/h", status: 405},
	{name: "head", method: "HEAD", path: "/h", status: 200},
	{name: "client X-Forwarded-For replaced", method: "GET", path: "/h", header: map[string]string{"X-Forwarded-For": "6.6.6.6"},
		status: 200, has: []string{`["X-Forwarded-For","127.0.0.1"]`}},
	{name: "encoded slash refused by the edge", method: "GET", path: "/h/a%2fb", status: 400},
}

// run sends c over client and checks the answer.
func (c h2Case) run(t *testing.T, client *http.Client, url string, wantProto int) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != wantProto {
		t.Errorf("%s: answered over %s", c.name, resp.Proto)
	}
	if resp.StatusCode != c.status {
		t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.status, got)
	}
	for _, s := range c.has {
		if !strings.Contains(string(got), s) {
			t.Errorf("%s: body %s lacks %s", c.name, got, s)
		}
	}
	if strings.Contains(string(got), "mallory") || strings.Contains(string(got), "6.6.6.6") {
		t.Errorf("%s: a client-set consumer header reached the upstream: %s", c.name, got)
	}
	if k := c.respHeader[0]; k != "" && resp.Header.Get(k) != c.respHeader[1] {
		t.Errorf("%s: response %s = %q, want %q", c.name, k, resp.Header.Get(k), c.respHeader[1])
	}
	for _, k := range []string{"Connection", "Keep-Alive", "Transfer-Encoding"} {
		if wantProto == 2 && resp.Header.Get(k) != "" {
			t.Errorf("%s: HTTP/2 response with %s", c.name, k)
		}
	}
}

// TestH2CEndToEnd: the same requests over h2c (prior knowledge) and HTTP/1.1 on the same
// listener get the same answers through built-in filters and an http-wasm plugin.
func TestH2CEndToEnd(t *testing.T) {
	g := startH2(t, "", false)
	h2 := g.client(t)
	h1 := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	for _, c := range h2Cases {
		c.run(t, h2, g.url(c.path), 2)
		c.run(t, h1, g.url(c.path), 1)
	}
	// A terminal that answers on the stream itself (edge.StreamOf) owns the response: the
	// engine writes nothing after it, and its trailers arrive.
	resp, err := h2.Get(g.url("/direct"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 203 || string(body) != "on the stream" || resp.Trailer.Get("X-Done") != "yes" {
		t.Errorf("answered on the stream: %d %q trailer %v", resp.StatusCode, body, resp.Trailer)
	}
	if resp, err = h1.Get(g.url("/direct")); err == nil {
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil || string(body) != "via ctx" {
		t.Errorf("HTTP/1.1: StreamOf should be nil: %q %v", body, err)
	}
}

// TestH2TLSEndToEnd: h2 is negotiated by ALPN on a TLS listener and served like HTTP/1.1,
// which a client offering only http/1.1 still gets there.
func TestH2TLSEndToEnd(t *testing.T) {
	g := startH2(t, "", true)
	h2 := g.client(t)
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, g.addr)
	}
	h2.Transport.(*http2.Transport).DialTLSContext = func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
		c, err := dial(ctx, network, "")
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, cfg)
		return tc, tc.HandshakeContext(ctx)
	}
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: g.pool, ServerName: "gw.example.com"},
	}}
	for _, c := range h2Cases {
		c.run(t, h2, g.url(c.path), 2)
		c.run(t, h1, g.url(c.path), 1)
	}
	// The upstream is told the client spoke TLS, as on HTTP/1.1.
	resp, err := h2.Get(g.url("/h"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `["X-Forwarded-Proto","https"]`) {
		t.Errorf("forwarded %s, want X-Forwarded-Proto https", body)
	}
}

// TestH2Off: with http2 off, TLS offers only http/1.1 and a plain listener answers the h2c
// preface as the HTTP/1 request it is not.
func TestH2Off(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(`
server: { listen: "127.0.0.1:0", admin: "", http2: { enabled: false, h2c: false } }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 ") {
		t.Errorf("preface with h2c off: got %q, %v; want an HTTP/1.1 error answer", b, err)
	}
}

// TestH2StreamedResponse: a chunked upstream body streams to an HTTP/2 client with the
// upstream's trailers; one that breaks off resets the stream rather than ending it, so the
// client cannot take the truncated body for a whole one.
func TestH2StreamedResponse(t *testing.T) {
	g := startH2(t, "", false)
	h2 := g.client(t)
	g.rec.setAnswer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n", "", false)
	resp, err := h2.Get(g.url("/rec/stream"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello world" || resp.Trailer.Get("X-T") != "v" {
		t.Errorf("streamed: %q %v, trailer %v", body, err, resp.Trailer)
	}
	// An upstream answer without Content-Type gets none over HTTP/2 either (no sniffing).
	g.rec.setAnswer("HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n<html>hi</html", "", false)
	resp, err = h2.Get(g.url("/rec/untyped"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("Content-Type %q added to an untyped answer", ct)
	}
	g.rec.setAnswer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "", true)
	resp, err = h2.Get(g.url("/rec/broken"))
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("broken upstream body read as whole: %q", body)
	}
}

// BenchmarkH2CGet is one small GET over an open h2c connection through a route with the
// headers filter to the echo upstream: the adapter's cost on top of x/net's.
func BenchmarkH2CGet(b *testing.B) {
	path := filepath.Join(b.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(`
server: { listen: "127.0.0.1:0", admin: "", http2: { h2c: true } }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes:
  - name: r
    upstream: demo
    filters: [ { headers: { request: { set: { X-Tag: tagged } } } } ]
`), 0o644); err != nil {
		b.Fatal(err)
	}
	_, addr := start(b, path)
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get("http://" + addr + "/x")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestH2BodyLimit: server.max_body_bytes holds on HTTP/2 as on HTTP/1.1, for a declared length
// and for a body without one.
func TestH2BodyLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", max_body_bytes: 1KiB, body_buffer_bytes: 0, http2: { h2c: true } }
access_log: { enabled: false }
upstreams: { be: { targets: [%q], retries: { attempts: 0 } } }
routes: [ { name: r, upstream: be } ]
`, backend(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	g := &h2Gateway{addr: addr}
	client := g.client(t)
	for _, declared := range []bool{true, false} {
		var body io.Reader = strings.NewReader(strings.Repeat("x", 4096))
		if !declared {
			body = io.MultiReader(body) // hides the length: the body is sent without content-length
		}
		resp, err := client.Post(g.url("/"), "text/plain", body)
		if err != nil {
			t.Fatalf("declared %v: %v", declared, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("declared %v: status %d (%s), want 413", declared, resp.StatusCode, got)
		}
	}
}

// TestH2FilterParity: response-shaping filters (cors with a preflight, compress, redirect,
// request-id) answer an HTTP/2 request exactly as they answer the same HTTP/1.1 request.
func TestH2FilterParity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(`
server: { listen: "127.0.0.1:0", admin: "", http2: { h2c: true } }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes:
  - name: shaped
    match: { path_prefix: /api/ }
    upstream: demo
    filters:
      - cors: { allow_origins: ["https://app.example"], allow_headers: [Content-Type], allow_credentials: true, max_age: 10m }
      - compress: {}
      - request-id: { header: X-Trace-Id }
  - name: moved
    match: { path_prefix: /old/ }
    upstream: demo
    filters: [ { redirect: { to: "/new{path}" } } ]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	g := &h2Gateway{addr: addr}
	h2 := g.client(t)
	h1 := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h2.CheckRedirect = h1.CheckRedirect
	pad := strings.Repeat("p", 3000) // the echoed request is then worth compressing
	tests := []struct {
		method, path string
		header       map[string]string
	}{
		{"GET", "/api/x", map[string]string{"Origin": "https://app.example", "Accept-Encoding": "gzip", "X-Pad": pad}},
		{"GET", "/api/x", map[string]string{"Origin": "https://evil.example", "Accept-Encoding": "br", "X-Pad": pad}},
		{"OPTIONS", "/api/x", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
			"Access-Control-Request-Headers": "content-type"}},
		{"GET", "/old/a/b?q=1", nil},
	}
	fields := []string{"Content-Encoding", "Vary", "Access-Control-Allow-Origin", "Access-Control-Allow-Credentials",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Location", "Content-Type"}
	answer := func(c *http.Client, method, path string, header map[string]string) string {
		req, _ := http.NewRequest(method, "http://"+addr+path, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := fmt.Sprintf("%d", resp.StatusCode)
		for _, f := range fields {
			s += fmt.Sprintf(" %s=%q", f, resp.Header.Values(f))
		}
		if resp.Header.Get("X-Trace-Id") == "" && strings.HasPrefix(path, "/api/") && method == "GET" {
			s += " no-trace-id"
		}
		// The echoed request names the client's protocol (User-Agent), so only whether a body
		// came is compared.
		return s + fmt.Sprintf(" body=%v", len(body) > 0)
	}
	for _, tt := range tests {
		a1, a2 := answer(h1, tt.method, tt.path, tt.header), answer(h2, tt.method, tt.path, tt.header)
		if a1 != a2 {
			t.Errorf("%s %s\nHTTP/1.1: %s\nHTTP/2:   %s", tt.method, tt.path, a1, a2)
		}
	}
}
