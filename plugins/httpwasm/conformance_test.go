package httpwasm_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
	// The gateway knows plugin ABIs only through the registry; link the http-wasm one in, as
	// cmd/weir does.
	_ "github.com/weir-gateway/weir/plugins/wasmhost"
)

// The conformance tests run the guest in testdata/conformance (Go source, built here with the
// standard toolchain for wasip1) on a catch-all route of an in-process gateway, in front of a
// backend that reflects what reached it. Each test is one rule of the http-wasm handler ABI as
// the specification and its reference host (http-wasm-host-go, handler/nethttp) define it,
// named after the specification's section. The guest reports what it observed in X-Got; the
// backend reports what it received in X-Next-* headers and echoes the request body.

var (
	guestOnce sync.Once
	guestPath string
	guestErr  error
)

// conformanceGuest builds the guest once per test binary.
func conformanceGuest(t *testing.T) string {
	t.Helper()
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "weir-conformance-")
		if err != nil {
			guestErr = err
			return
		}
		guestPath = filepath.Join(dir, "conformance.wasm")
		goBin := filepath.Join(runtimeGOROOT(), "bin", "go")
		cmd := exec.Command(goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", guestPath, ".")
		cmd.Dir = filepath.Join("testdata", "conformance")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			guestErr = fmt.Errorf("build the conformance guest: %v\n%s", err, out)
		}
	})
	if guestErr != nil {
		t.Fatal(guestErr)
	}
	return guestPath
}

// runtimeGOROOT is the toolchain running the tests, so the guest is built by the same Go.
func runtimeGOROOT() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// reflector is the upstream: it reports the request it received and echoes its body.
// X-Backend-Status picks its status; X-Backend-Header makes it send X-Shared, X-Custom and
// Content-Type, names in the case written here.
func reflector(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		DisableHeaderNamesNormalizing: true,
		Handler: func(rc *fasthttp.RequestCtx) {
			h := &rc.Request.Header
			rc.Response.Header.Set("X-Next-Method", string(h.Method()))
			rc.Response.Header.Set("X-Next-Uri", string(h.RequestURI()))
			vals := map[string][]string{}
			for k, v := range h.All() {
				name := strings.ToLower(string(k))
				vals[name] = append(vals[name], string(v))
			}
			for name, v := range vals {
				rc.Response.Header.Set("X-Next-Header-"+name, strings.Join(v, "|"))
			}
			if s := h.Peek("X-Backend-Status"); len(s) > 0 {
				var code int
				fmt.Sscan(string(s), &code)
				rc.SetStatusCode(code)
			}
			if len(h.Peek("X-Backend-Header")) > 0 {
				rc.Response.Header.Set("X-Shared", "backend")
				rc.Response.Header.Set("X-Custom", "custom")
				rc.Response.Header.Set("Content-Type", "text/backend")
			}
			rc.SetBody(rc.Request.Body())
		},
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// gateway serves the conformance guest on every path but /dead/, whose upstream refuses
// connections, and returns its address.
func gateway(t *testing.T) string {
	t.Helper()
	wasm := conformanceGuest(t)
	be := reflector(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 2s, plugin_cache_dir: "off" }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s }
  dead: { targets: [%q], timeout: 1s }
plugins:
  conformance: { file: %q, timeout: 2s, pool: { max: 4 } }
routes:
  - name: dead
    match: { path_prefix: /dead/ }
    upstream: dead
    filters:
      - conformance: {}
  - name: all
    match: { path_prefix: / }
    upstream: be
    filters:
      - conformance: {}
`, be, deadAddr, wasm)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(path, zerolog.Nop())
	if err != nil {
		t.Fatalf("engine: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// reply is what the client received.
type reply struct {
	status int
	header http.Header
	body   string
	local  string // the client's address, as the gateway saw it
}

func (r reply) got() string { return r.header.Get("X-Got") }

// send sends one request over a fresh connection, with the target written exactly as given.
// hdr holds "Name: value" lines; a name given twice is sent twice.
func send(t *testing.T, addr, method, target, proto string, hdr []string, body string) reply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\r\nHost: conformance.test\r\nConnection: close\r\n", method, target, proto)
	for _, h := range hdr {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == "POST" || method == "PUT" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(rb), local: conn.LocalAddr().String()}
}

func get(t *testing.T, addr, rule, arg string, hdr ...string) reply {
	t.Helper()
	hdr = append(hdr, "X-Rule: "+rule)
	if arg != "" {
		hdr = append(hdr, "X-Arg: "+arg)
	}
	return send(t, addr, "GET", "/conformance", "HTTP/1.1", hdr, "")
}

// TestConformance pins the behaviour of every host function, phase by phase, against the
// http-wasm specification and its reference host. Subtests share one gateway.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go guest and starts a gateway")
	}
	addr := gateway(t)

	// get_protocol_version: the client's protocol, "HTTP/1.1" or "HTTP/1.0".
	t.Run("get_protocol_version", func(t *testing.T) {
		for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
			r := send(t, addr, "GET", "/v", proto, []string{"X-Rule: get_protocol_version"}, "")
			if r.status != 200 || r.got() != proto {
				t.Errorf("%s: status %d, get_protocol_version %q", proto, r.status, r.got())
			}
		}
	})

	// get_source_addr: the client's address as "ip:port" ("[ip6]:port" for IPv6).
	t.Run("get_source_addr", func(t *testing.T) {
		r := get(t, addr, "get_source_addr", "")
		if r.got() != r.local {
			t.Errorf("get_source_addr %q, want the client's %q", r.got(), r.local)
		}
	})

	// get_method: the request's method, whatever it is.
	t.Run("get_method", func(t *testing.T) {
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PURGE"} {
			r := send(t, addr, m, "/m", "HTTP/1.1", []string{"X-Rule: get_method"}, "")
			if r.got() != m {
				t.Errorf("%s: get_method %q", m, r.got())
			}
		}
	})

	// set_method: the upstream receives the method set.
	t.Run("set_method", func(t *testing.T) {
		r := get(t, addr, "set_method", "POST")
		if got := r.header.Get("X-Next-Method"); got != "POST" {
			t.Errorf("upstream saw method %q, want POST", got)
		}
	})

	// get_uri: the path and query, percent-encoded as received ("/" for an empty path).
	t.Run("get_uri", func(t *testing.T) {
		for _, tt := range []struct{ target, want string }{
			{"/simple", "/simple"},
			{"/simple%26clean", "/simple%26clean"},
			{"/a%3Fb/c", "/a%3Fb/c"},
			{"/animal?name=panda", "/animal?name=panda"},
			{"/disney?name=chip%26dale", "/disney?name=chip%26dale"},
			{"/v1.0/hi?name=kung+fu+panda", "/v1.0/hi?name=kung+fu+panda"},
			{"http://conformance.test/abs?x=1", "/abs?x=1"},
		} {
			r := send(t, addr, "GET", tt.target, "HTTP/1.1", []string{"X-Rule: get_uri"}, "")
			if r.got() != tt.want {
				t.Errorf("%s: get_uri %q, want %q", tt.target, r.got(), tt.want)
			}
		}
	})

	// set_uri: the upstream receives the URI exactly as set, encoded; a URI without a query
	// drops the old one; an empty URI is "/".
	t.Run("set_uri", func(t *testing.T) {
		for _, tt := range []struct{ uri, want string }{
			{"/simple", "/simple"},
			{"/simple%26clean", "/simple%26clean"},
			{"/a%2Fb", "/a%2Fb"},
			{"/animal?name=panda", "/animal?name=panda"},
			{"/disney?name=chip%26dale", "/disney?name=chip%26dale"},
		} {
			r := send(t, addr, "GET", "/old?gone=1", "HTTP/1.1", []string{"X-Rule: set_uri", "X-Arg: " + tt.uri}, "")
			if got := r.header.Get("X-Next-Uri"); got != tt.want {
				t.Errorf("set_uri %q: upstream saw %q, want %q", tt.uri, got, tt.want)
			}
		}
		r := send(t, addr, "GET", "/old?gone=1", "HTTP/1.1", []string{"X-Rule: set_uri"}, "")
		if got := r.header.Get("X-Next-Uri"); got != "/" {
			t.Errorf("set_uri \"\": upstream saw %q, want /", got)
		}
	})

	// get_header_values: every value of the name, in order, the name matched without regard
	// to case; none (count 0) for an absent header.
	t.Run("get_header_values", func(t *testing.T) {
		hdr := []string{"single-header: value", "Multi-Header: value1", "multi-header: value2"}
		for _, tt := range []struct{ name, want string }{
			{"single-header", "1:value"},
			{"Single-Header", "1:value"},
			{"SINGLE-HEADER", "1:value"},
			{"multi-header", "2:value1|value2"},
			{"not-header", "0:"},
			{"host", "1:conformance.test"},
		} {
			r := get(t, addr, "get_header_values", tt.name, hdr...)
			if r.got() != tt.want {
				t.Errorf("get_header_values %q: %q, want %q", tt.name, r.got(), tt.want)
			}
		}
	})

	// get_header_names: every name once, in lowercase, host included.
	t.Run("get_header_names", func(t *testing.T) {
		r := get(t, addr, "get_header_names", "", "A-Header: 1", "a-header: 2", "B-HEADER: 3")
		names := strings.Split(r.got(), ",")
		seen := map[string]int{}
		for _, n := range names {
			seen[n]++
			if n != strings.ToLower(n) {
				t.Errorf("name %q is not lowercase", n)
			}
		}
		for _, want := range []string{"host", "a-header", "b-header", "x-rule"} {
			if seen[want] != 1 {
				t.Errorf("name %q listed %d times in %q, want once", want, seen[want], r.got())
			}
		}
		r = get(t, addr, "get_header_names/response", "")
		if names := strings.Split(r.got(), ","); !contains(names, "x-one") || count(names, "x-one") != 1 {
			t.Errorf("response header names %q, want x-one once", r.got())
		}
		if got := r.header.Values("X-One"); strings.Join(got, "|") != "1|2" {
			t.Errorf("X-One %q, want values 1 and 2", got)
		}
		// Trailers: none on a request without any.
		if r := get(t, addr, "get_header_names/request_trailers", ""); r.got() != "0" {
			t.Errorf("request trailer names: %q, want none", r.got())
		}
	})

	// set_header_value replaces every value; add_header_value appends one; remove_header
	// removes every value and ignores an absent name.
	t.Run("set_header_value", func(t *testing.T) {
		r := get(t, addr, "set_header_value", "value", "X-Existing: bear", "X-Existing: wolf")
		if e, n := r.header.Get("X-Next-Header-x-existing"), r.header.Get("X-Next-Header-x-new"); e != "value" || n != "value" {
			t.Errorf("upstream saw X-Existing %q, X-New %q; want value, value", e, n)
		}
	})
	t.Run("add_header_value", func(t *testing.T) {
		r := get(t, addr, "add_header_value", "value", "X-Existing: bear")
		if e, n := r.header.Get("X-Next-Header-x-existing"), r.header.Get("X-Next-Header-x-new"); e != "bear|value" || n != "value" {
			t.Errorf("upstream saw X-Existing %q, X-New %q; want bear|value, value", e, n)
		}
	})
	t.Run("remove_header", func(t *testing.T) {
		r := get(t, addr, "remove_header", "", "X-Existing: bear", "X-Existing: wolf", "X-Kept: 1")
		if e, k := r.header.Get("X-Next-Header-x-existing"), r.header.Get("X-Next-Header-x-kept"); e != "" || k != "1" {
			t.Errorf("upstream saw X-Existing %q, X-Kept %q; want none, 1", e, k)
		}
	})

	// read_body: stateful reads of at most buf_limit bytes up to EOF; with buffer_request the
	// upstream still receives the whole body.
	t.Run("read_body", func(t *testing.T) {
		for _, size := range []int{0, 5, 2048, 4096, 5000, 100 << 10} {
			body := strings.Repeat("a", size)
			for _, chunk := range []int{1024, 4096} {
				hdr := []string{"X-Rule: read_body", fmt.Sprintf("X-Arg: %d", chunk)}
				r := send(t, addr, "POST", "/body", "HTTP/1.1", hdr, body)
				reads := size/chunk + 1 // the read that reaches the end reports EOF with it
				if size > 0 && size%chunk == 0 {
					reads = size / chunk
				}
				want := fmt.Sprintf("%d/%d", size, reads)
				if got := r.header.Get("X-Next-Header-x-guest-read"); got != want {
					t.Errorf("size %d, chunk %d: guest read (bytes/reads) %q, want %q", size, chunk, got, want)
				}
				if r.status != 200 || r.body != body {
					t.Errorf("size %d: upstream echoed %d bytes (status %d), want the whole body", size, len(r.body), r.status)
				}
			}
		}
	})

	// write_body: the first write replaces the body, later ones append; the upstream receives
	// the new body with its own length. On the response with next=0, the client does.
	t.Run("write_body", func(t *testing.T) {
		r := send(t, addr, "POST", "/w", "HTTP/1.1", []string{"X-Rule: write_body/request"}, "original")
		if r.body != "replaced+appended" || r.header.Get("X-Next-Header-content-length") != "17" {
			t.Errorf("upstream received %q (Content-Length %q)", r.body, r.header.Get("X-Next-Header-content-length"))
		}
		r = get(t, addr, "write_body/response", "")
		if r.status != 200 || r.body != "guest+appended" {
			t.Errorf("response %d %q, want 200 guest+appended", r.status, r.body)
		}
	})

	// set_status_code, and handle_request returning next=0: the guest's response, 200 and
	// empty by default, and the upstream is not called.
	t.Run("handle_request/next=0", func(t *testing.T) {
		r := get(t, addr, "next=0", "")
		if r.status != 200 || r.body != "" || r.header.Get("X-Next-Method") != "" {
			t.Errorf("next=0: %d %q, upstream reached: %t", r.status, r.body, r.header.Get("X-Next-Method") != "")
		}
		r = get(t, addr, "set_status_code", "404")
		if r.status != 404 {
			t.Errorf("set_status_code 404: status %d", r.status)
		}
	})

	// handle_request returning next=1 after changing the response: what the guest set is kept
	// and the upstream's response is merged into it, as the reference host does (the guest and
	// the next handler write to the same response).
	t.Run("handle_request/next=1/response_header", func(t *testing.T) {
		r := get(t, addr, "next=1/response_header", "", "X-Backend-Header: 1")
		if r.header.Get("X-Guest") != "before-next" {
			t.Errorf("X-Guest %q: the guest's response header was lost", r.header.Get("X-Guest"))
		}
		shared := r.header.Values("X-Shared")
		sort.Strings(shared)
		if strings.Join(shared, "|") != "backend|guest" {
			t.Errorf("X-Shared %q, want the guest's and the upstream's values", shared)
		}
		if r.header.Get("X-Next-Method") != "GET" || r.header.Get("Content-Type") != "text/backend" {
			t.Errorf("the upstream's headers were lost: %v", r.header)
		}
	})
	t.Run("handle_request/next=1/response_body", func(t *testing.T) {
		r := send(t, addr, "POST", "/b", "HTTP/1.1", []string{"X-Rule: next=1/response_body"}, "upstream")
		if r.body != "guest|upstream" {
			t.Errorf("body %q, want the guest's body followed by the upstream's", r.body)
		}
		big := strings.Repeat("u", 200<<10) // streamed by the gateway, not read whole
		r = send(t, addr, "POST", "/b", "HTTP/1.1", []string{"X-Rule: next=1/response_body"}, big)
		if r.body != "guest|"+big {
			t.Errorf("streamed upstream body: got %d bytes, want %d", len(r.body), len("guest|"+big))
		}
	})
	// Status before next: without buffer_response the guest's status stands (the reference
	// host has sent it); with buffer_response the upstream's replaces it, and handle_response
	// reads it.
	t.Run("handle_request/next=1/status", func(t *testing.T) {
		r := get(t, addr, "next=1/status", "", "X-Backend-Status: 202")
		if r.status != 418 {
			t.Errorf("without buffer_response: status %d, want the guest's 418", r.status)
		}
		r = get(t, addr, "next=1/status", "buffer_response", "X-Backend-Status: 202")
		if r.status != 202 || r.header.Get("X-Upstream-Status") != "202" {
			t.Errorf("with buffer_response: status %d (handle_response read %q), want the upstream's 202",
				r.status, r.header.Get("X-Upstream-Status"))
		}
	})

	// handle_response: called with the ctx handle_request returned and is_error 0, or 1 when
	// the host failed to produce a response.
	t.Run("handle_response/req_ctx", func(t *testing.T) {
		if r := get(t, addr, "handle_response/req_ctx", ""); r.got() != "42/0" {
			t.Errorf("handle_response(req_ctx, is_error) = %q, want 42/0", r.got())
		}
		r := send(t, addr, "GET", "/dead/x", "HTTP/1.1", []string{"X-Rule: handle_response/req_ctx"}, "")
		if r.got() != "42/1" || r.status != 502 {
			t.Errorf("upstream down: handle_response(req_ctx, is_error) = %q, status %d; want 42/1, 502", r.got(), r.status)
		}
	})

	// buffer_response: handle_response reads the upstream's status and body and may replace
	// both; the first write_body there replaces the body.
	t.Run("handle_response/buffer_response", func(t *testing.T) {
		r := send(t, addr, "POST", "/br", "HTTP/1.1", []string{"X-Rule: handle_response/buffer_response"}, "upstream")
		if r.got() != "200:upstream" || r.status != 201 || r.body != "replaced:UPSTREAM" {
			t.Errorf("got %q, response %d %q; want 200:upstream, 201 replaced:UPSTREAM", r.got(), r.status, r.body)
		}
	})

	// Header names are case-insensitive for the response an upstream sent too, although the
	// gateway forwards its names in the case they came in: lowercase names read, replace and
	// remove the upstream's X-Custom, X-Shared and Content-Type.
	t.Run("handle_response/header_case", func(t *testing.T) {
		r := get(t, addr, "handle_response/header_case", "", "X-Backend-Header: 1")
		if want := "custom;text/backend;0;guest"; r.got() != want {
			t.Errorf("guest saw %q, want %q", r.got(), want)
		}
		if v := r.header.Values("X-Shared"); len(v) != 1 || v[0] != "guest" {
			t.Errorf("X-Shared %q, want only the guest's value", v)
		}
		if v := r.header.Values("X-Custom"); len(v) != 0 {
			t.Errorf("X-Custom %q, want it removed", v)
		}
		if r.header.Get("Content-Type") != "text/backend" {
			t.Errorf("Content-Type %q, want the upstream's", r.header.Get("Content-Type"))
		}
	})

	// Without buffer_response the response body reads as consumed in handle_response and
	// changing the response there traps (answered per the fail policy: closed, 500).
	t.Run("handle_response/no_buffer_response", func(t *testing.T) {
		r := get(t, addr, "handle_response/no_buffer_response", "")
		if r.status != 500 || r.header.Get("X-Too-Late") != "" {
			t.Errorf("status %d, X-Too-Late %q; want 500 and no header", r.status, r.header.Get("X-Too-Late"))
		}
	})

	// enable_features: returns every feature the host supports (buffer_request,
	// buffer_response, trailers).
	t.Run("enable_features", func(t *testing.T) {
		if r := get(t, addr, "enable_features", ""); r.got() != "7" {
			t.Errorf("enable_features = %q, want 7", r.got())
		}
	})
}

func contains(list []string, s string) bool { return count(list, s) > 0 }

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
