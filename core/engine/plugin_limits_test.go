package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/plugins/httpwasm"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// rawUpstream is an HTTP/1.1 upstream that records the bytes of every request exactly as they
// arrived, so a test can assert what a plugin made the gateway send: nothing, or the safe form.
// A path ending in /big is answered with a body of bigSize bytes; anything else answers "ok".
type rawUpstream struct {
	addr string
	mu   sync.Mutex
	reqs [][]byte // each request's head as received (body left out)
	n    int64    // every byte received
}

const bigSize = 3 << 20

// overLimit is a request body over the limit guests' max_body_bytes (1MiB) that still fits the
// loopback socket buffers, so the client has written all of it when the gateway answers 413 and
// closes, and reads the answer rather than a reset.
const overLimit = 1<<20 + 256<<10

func startRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serveConn(conn)
		}
	}()
	return u
}

func (u *rawUpstream) serveConn(conn net.Conn) {
	defer conn.Close()
	cr := &countReader{r: conn, u: u}
	br := bufio.NewReaderSize(cr, 1<<20)
	var req fasthttp.Request
	for {
		// Record the head before fasthttp parses it: fasthttp may reject what a broken
		// gateway would have sent, and the test must see it anyway.
		head, err := peekHead(br)
		if len(head) > 0 {
			u.mu.Lock()
			u.reqs = append(u.reqs, bytes.Clone(head[:min(len(head), 64<<10)]))
			u.mu.Unlock()
		}
		if err != nil {
			return
		}
		req.Reset()
		if err := req.Read(br); err != nil {
			return
		}
		body := []byte("ok")
		if bytes.HasSuffix(req.URI().Path(), []byte("/big")) {
			body = bytes.Repeat([]byte("b"), bigSize)
		}
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-From: upstream\r\n\r\n", len(body))
		if _, err := conn.Write(body); err != nil {
			return
		}
	}
}

// peekHead returns the buffered request head, up to and including the blank line, without
// consuming it.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], nil
		}
		if len(b) == br.Size() {
			return b, fmt.Errorf("no request head in %d bytes", len(b))
		}
		if _, err := br.Peek(len(b) + 1); err != nil { // wait for more
			b, _ = br.Peek(br.Buffered())
			return b, err
		}
	}
}

type countReader struct {
	r io.Reader
	u *rawUpstream
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.u.mu.Lock()
	c.u.n += int64(n)
	c.u.mu.Unlock()
	return n, err
}

// take returns and forgets what the upstream has received.
func (u *rawUpstream) take() (reqs [][]byte, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	reqs, n = u.reqs, u.n
	u.reqs, u.n = nil, 0
	return reqs, n
}

// Guest memory layout of the limit guests.
const (
	gA = 0    // first string
	gB = 256  // second string
	gV = 1024 // a large value
)

// stepGuest is a guest whose handle_request runs req and returns next, and whose
// handle_response runs resp; a and b are placed at gA and gB.
func stepGuest(a, b string, next int64, req, resp []wasmtest.Step) []byte {
	g := wasmtest.Guest{
		Imports: wasmtest.StepImports(req, resp),
		Data:    []wasmtest.Data{{Offset: gA, Bytes: []byte(a)}, {Offset: gB, Bytes: []byte(b)}},
	}
	g.HandleRequest = g.Steps(wasmtest.NewCode(), req).I64(next)
	g.HandleResponse = g.Steps(wasmtest.NewCode(), resp)
	return g.Module().Encode()
}

// floodGuest adds 2,000 request headers of 60 KB each (120 MB) from one 64 KiB page of memory.
func floodGuest() []byte {
	const n, size = 2000, 60000
	g := wasmtest.Guest{
		Imports: []string{"add_header_value"},
		Data:    []wasmtest.Data{{Offset: gA, Bytes: []byte("X-Flood")}, {Offset: gV, Bytes: bytes.Repeat([]byte("f"), size)}},
	}
	// local 0 counts the headers added.
	g.HandleRequest = wasmtest.NewCode().
		Loop().
		I32(httpwasm.HeaderRequest).I32(gA).I32(7).I32(gV).I32(size).Call(g.Fn("add_header_value")).
		LocalGet(0).I32(1).I32Add().LocalSet(0).
		LocalGet(0).I32(n).I32Ne().BrIf(0).
		End().
		I64(1)
	m := g.Module()
	m.Funcs[0].Locals = []byte{wasmtest.I32}
	return m.Encode()
}

// ctlValue holds VT, SOH, DEL and ESC.
const ctlValue = "a\x0bb\x01c\x7fd\x1b[0m"

// limitGuests are the reproductions of the plugin-limit issue, one guest each.
func limitGuests() map[string][]byte {
	kReq := int32(httpwasm.HeaderRequest)
	return map[string][]byte{
		"flood": floodGuest(),
		"ctl": stepGuest("X-Evil", ctlValue, 1, []wasmtest.Step{
			wasmtest.Call("set_header_value", kReq, gA, 6, gB, int32(len(ctlValue)))}, nil),
		"conn": stepGuest("Connection", "X-Forwarded-For", 1, []wasmtest.Step{
			wasmtest.Call("set_header_value", kReq, gA, 10, gB, 15)}, nil),
		"status101": stepGuest("", "", 0, []wasmtest.Step{wasmtest.Call("set_status_code", 101)}, nil),
		"uri":       stepGuest("//evil.example/pwn", "", 1, []wasmtest.Step{wasmtest.Call("set_uri", gA, 18)}, nil),
		"readbody": stepGuest("", "", 1, []wasmtest.Step{
			wasmtest.Call("read_body", httpwasm.BodyRequest, gV, 4096)}, nil),
		"buffer": stepGuest("", "", 1,
			[]wasmtest.Step{wasmtest.Call("enable_features", int32(httpwasm.FeatureBufferResponse))},
			[]wasmtest.Step{wasmtest.Call("read_body", httpwasm.BodyResponse, gV, 4096)}),
	}
}

// startLimitGateway runs a gateway with one route per limit guest and fail policy, at
// /<fail>-<guest>/, in front of a raw upstream.
func startLimitGateway(t *testing.T) (addr string, up *rawUpstream) {
	t.Helper()
	dir := t.TempDir()
	up = startRawUpstream(t)
	var plugins, routes strings.Builder
	for name, wasm := range limitGuests() {
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, fail := range []string{"closed", "open"} {
			p := fail + "-" + name
			fmt.Fprintf(&plugins, "  %s: { file: %s.wasm, memory_mb: 1, timeout: 2s, max_body_bytes: 1MiB, fail: %s }\n", p, name, fail)
			fmt.Fprintf(&routes, "  - name: %[1]s\n    match: { path_prefix: /%[1]s/ }\n    upstream: raw\n    filters:\n      - %[1]s: {}\n", p)
		}
	}
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, plugin_cache_dir: "off" }
access_log: { enabled: false }
upstreams:
  raw: { targets: [%q], timeout: 5s, idle_timeout: 300ms }
plugins:
%s
routes:
%s`, up.addr, plugins.String(), routes.String())
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr = start(t, path)
	return addr, up
}

type limitResult struct {
	status int
	header string
	body   int
}

// sendLimit makes one request to the gateway; a POST body of size bytes is streamed chunked.
func sendLimit(t *testing.T, addr, method, path string, size int) limitResult {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if size > 0 {
		return uploadLimit(t, addr, path, size)
	}
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + addr + path)
	c := &fasthttp.Client{ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	if err := c.DoTimeout(req, resp, 20*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return limitResult{status: resp.StatusCode(), header: resp.Header.String(), body: len(resp.Body())}
}

// uploadLimit POSTs a chunked body of size bytes and reads the answer while still writing: a
// gateway that refuses the body answers and closes before reading all of it, and a client that
// only reads after writing would see the reset, not the answer.
func uploadLimit(t *testing.T, addr, path string, size int) limitResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n", path, addr)
		chunk := bytes.Repeat([]byte("p"), 32<<10)
		for left := size; left > 0; left -= len(chunk) {
			c := chunk[:min(len(chunk), left)]
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(c), c)
		}
		w.WriteString("0\r\n\r\n")
		_ = w.Flush() // fails once the gateway has answered and closed; the answer is what counts
	}()
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatalf("POST %s: read the answer: %v", path, err)
	}
	return limitResult{status: resp.StatusCode(), header: resp.Header.String(), body: len(resp.Body())}
}

// TestPluginLimitsEndToEnd runs every reproduction of the plugin-limit issue through a real
// gateway and checks what the client got and what the upstream received: nothing when the
// plugin fails closed, and only the safe form of the request when it fails open.
func TestPluginLimitsEndToEnd(t *testing.T) {
	addr, up := startLimitGateway(t)
	tests := []struct {
		name       string
		method     string
		path       string
		size       int // request body, streamed chunked
		wantStatus int
		wantSent   bool   // whether the upstream got a request
		notInHead  string // must not be in what the upstream got
		inHead     string // must be in what the upstream got
	}{
		{name: "flood closed", path: "/closed-flood/x", wantStatus: 500},
		{name: "flood open", path: "/open-flood/x", wantStatus: 200, wantSent: true, notInHead: "X-Flood"},
		{name: "control bytes closed", path: "/closed-ctl/x", wantStatus: 500},
		{name: "control bytes open", path: "/open-ctl/x", wantStatus: 200, wantSent: true, notInHead: "X-Evil"},
		{name: "connection closed", path: "/closed-conn/x", wantStatus: 500},
		{name: "connection open", path: "/open-conn/x", wantStatus: 200, wantSent: true, notInHead: "Connection: X-Forwarded-For", inHead: "X-Forwarded-For: 127.0.0.1"},
		{name: "101 closed", path: "/closed-status101/x", wantStatus: 500},
		{name: "101 open", path: "/open-status101/x", wantStatus: 200, wantSent: true},
		{name: "authority in uri closed", path: "/closed-uri/x", wantStatus: 500},
		{name: "authority in uri open", path: "/open-uri/x", wantStatus: 200, wantSent: true, notInHead: "evil.example", inHead: "GET /open-uri/x HTTP/1.1"},
		{name: "streamed body over max_body_bytes", method: "POST", path: "/closed-readbody/x", size: overLimit, wantStatus: 413},
		{name: "streamed body over max_body_bytes, fail open", method: "POST", path: "/open-readbody/x", size: overLimit, wantStatus: 413},
		{name: "streamed body under max_body_bytes", method: "POST", path: "/closed-readbody/x", size: 512 << 10, wantStatus: 200, wantSent: true},
		{name: "buffered response over max_body_bytes", path: "/closed-buffer/big", wantStatus: 502, wantSent: true, notInHead: "X-From"},
		{name: "buffered response under max_body_bytes", path: "/closed-buffer/small", wantStatus: 200, wantSent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.take()
			method := tt.method
			if method == "" {
				method = "GET"
			}
			got := sendLimit(t, addr, method, tt.path, tt.size)
			reqs, n := up.take()
			if got.status != tt.wantStatus {
				t.Errorf("status = %d, want %d (response head %q)", got.status, tt.wantStatus, got.header)
			}
			if sent := len(reqs) > 0; sent != tt.wantSent {
				t.Fatalf("upstream got %d requests (%d bytes), want any: %v; first: %.300q", len(reqs), n, tt.wantSent, first(reqs))
			}
			head := string(first(reqs))
			if tt.notInHead != "" && strings.Contains(head+got.header, tt.notInHead) {
				t.Errorf("%q reached the upstream or the client:\nupstream: %.500q\nclient: %q", tt.notInHead, head, got.header)
			}
			if tt.inHead != "" && !strings.Contains(head, tt.inHead) {
				t.Errorf("upstream head %.500q lacks %q", head, tt.inHead)
			}
			if strings.ContainsAny(head, "\x0b\x01\x7f\x1b") {
				t.Errorf("control bytes reached the upstream: %.500q", head)
			}
			if n > 1<<20 {
				t.Errorf("the upstream received %d bytes", n)
			}
		})
	}
}

func first(reqs [][]byte) []byte {
	if len(reqs) == 0 {
		return nil
	}
	return reqs[0]
}

// TestPluginHeaderFloodMemory: six requests through a guest with memory_mb: 1 that tries to
// add 2,000 headers of 60 KB leave the gateway's memory where it was (the issue measured 32 MB
// growing to 920 MB): the first write past server.max_header_bytes traps.
func TestPluginHeaderFloodMemory(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("reads /proc/self/status")
	}
	addr, up := startLimitGateway(t)
	sendLimit(t, addr, "GET", "/closed-flood/warm", 0) // instances and connections exist before measuring
	rssBefore, hwmBefore := procMemory(t)
	var statuses []int
	for i := range 6 {
		statuses = append(statuses, sendLimit(t, addr, "GET", "/closed-flood/"+strconv.Itoa(i), 0).status)
	}
	rssAfter, hwmAfter := procMemory(t)
	for i, s := range statuses {
		if s != 500 {
			t.Errorf("request %d: status %d, want 500", i, s)
		}
	}
	t.Logf("VmRSS %d -> %d KiB, VmHWM %d -> %d KiB", rssBefore>>10, rssAfter>>10, hwmBefore>>10, hwmAfter>>10)
	const slack = 8 << 20
	if rssAfter > rssBefore+slack || hwmAfter > hwmBefore+slack {
		t.Errorf("memory grew: VmRSS %d -> %d KiB, VmHWM %d -> %d KiB (allowed %d KiB)", rssBefore>>10, rssAfter>>10, hwmBefore>>10, hwmAfter>>10, slack>>10)
	}
	if reqs, n := up.take(); len(reqs) > 0 || n > 0 {
		t.Errorf("the upstream got %d requests, %d bytes", len(reqs), n)
	}
}

// procMemory returns VmRSS and VmHWM in bytes, after a collection returned what it could.
func procMemory(t *testing.T) (rss, hwm int64) {
	t.Helper()
	goruntime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
