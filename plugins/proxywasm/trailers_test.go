package proxywasm

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/core/engine"
)

//go:embed testdata/trailers.wasm
var trailersWasm []byte

// trailerBackend is an upstream that records each request's body and trailers and answers with
// a chunked body and the trailers X-Resp-T, X-Resp-Drop (names in that case).
type trailerBackend struct {
	addr string
	mu   sync.Mutex
	reqs []backendRequest
}

type backendRequest struct {
	chunked  bool
	body     string
	trailers http.Header
}

func startTrailerBackend(t *testing.T) *trailerBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &trailerBackend{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(req.Body)
					if err != nil {
						return
					}
					b.mu.Lock()
					b.reqs = append(b.reqs, backendRequest{
						chunked: len(req.TransferEncoding) > 0, body: string(body), trailers: req.Trailer.Clone(),
					})
					b.mu.Unlock()
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"+
						"Trailer: X-Resp-T, X-Resp-Drop\r\n\r\n5\r\nhello\r\n0\r\nX-Resp-T: upstream\r\nX-Resp-Drop: 1\r\n\r\n")
				}
			}()
		}
	}()
	return b
}

func (b *trailerBackend) last(t *testing.T) backendRequest {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return b.reqs[len(b.reqs)-1]
}

// trailerGateway serves the trailers guest in front of backend and returns its address.
func trailerGateway(t *testing.T, backend string) string {
	t.Helper()
	dir := t.TempDir()
	wasm := filepath.Join(dir, "trailers.wasm")
	if err := os.WriteFile(wasm, trailersWasm, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 2s, plugin_cache_dir: "off" }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s }
plugins:
  trailers: { file: %q, timeout: 2s }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: be
    filters:
      - trailers: {}
`, backend, wasm)
	path := filepath.Join(dir, "weir.yaml")
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

// exchange sends raw over a fresh connection and reads the response, body and trailers.
func exchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// TestTrailersEndToEnd: a chunked request's trailers and a chunked response's trailers reach
// the trailers callbacks (after a body callback with end_of_stream 0), read and rewritten
// through the trailer maps, and travel on as the guest left them.
func TestTrailersEndToEnd(t *testing.T) {
	be := startTrailerBackend(t)
	addr := trailerGateway(t, be.addr)
	// A small body the server reads whole, and one large enough to reach the filter as a
	// stream (its trailers are read with it).
	for _, reqBody := range []string{"abc", strings.Repeat("b", 300<<10)} {
		raw := fmt.Sprintf("POST /t HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"+
			"Trailer: X-Req-T, X-Req-Drop\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n"+
			"X-Req-T: client\r\nX-Req-Drop: 1\r\n\r\n", len(reqBody), reqBody)
		resp, body := exchange(t, addr, raw)
		if resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("%d-byte request: response %d %q, want 200 hello", len(reqBody), resp.StatusCode, body)
		}
		got := be.last(t)
		if !got.chunked || got.body != reqBody {
			t.Errorf("upstream got a %d-byte body (chunked %v), want the %d bytes sent, chunked", len(got.body), got.chunked, len(reqBody))
		}
		want := map[string]string{
			"X-Req-T": "guest", "X-Req-Seen": "client", "X-Req-N": "2", "X-Body-Eos": "0", "X-Bad": "2", "X-Req-Drop": "",
		}
		for k, v := range want {
			if g := got.trailers.Get(k); g != v {
				t.Errorf("%d-byte request: upstream trailer %s = %q, want %q (all: %v)", len(reqBody), k, g, v, got.trailers)
			}
		}
		if g := got.trailers.Get("Content-Type"); g != "" {
			t.Errorf("upstream trailer Content-Type = %q: a name that cannot be a trailer was sent", g)
		}
		want = map[string]string{
			"X-Resp-T": "guest", "X-Resp-Seen": "upstream", "X-Resp-N": "2", "X-Body-Eos": "0", "X-Bad": "2", "X-Resp-Drop": "",
		}
		for k, v := range want {
			if g := resp.Trailer.Get(k); g != v {
				t.Errorf("client trailer %s = %q, want %q (all: %v)", k, g, v, resp.Trailer)
			}
		}
		if !strings.EqualFold(strings.Join(resp.TransferEncoding, ","), "chunked") {
			t.Errorf("response transfer encoding %q, want chunked", resp.TransferEncoding)
		}
	}
}

// TestTrailersOnlyWithChunkedBodies: a request framed by Content-Length has no trailers: the
// trailers callback is not called and the upstream gets the request as it was.
func TestTrailersOnlyWithChunkedBodies(t *testing.T) {
	be := startTrailerBackend(t)
	addr := trailerGateway(t, be.addr)
	resp, _ := exchange(t, addr, "POST /t HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := be.last(t)
	if got.chunked || got.body != "abc" || len(got.trailers) != 0 {
		t.Errorf("upstream got %q chunked %v trailers %v; want abc framed by length, no trailers", got.body, got.chunked, got.trailers)
	}
}

// TestTrailerMapRules: trailer maps follow the phase rules of header maps, are empty and drop
// writes for a message that is not chunked, refuse pseudo-headers, names that cannot be
// trailers and names of the header section, and find trailers in any case.
func TestTrailerMapRules(t *testing.T) {
	e := newHostEnv(t)
	ret, retSize := uint32(3100), uint32(3104)
	write := func(kind uint32, name, val string) uint64 {
		k, kn := e.put(3000, name)
		v, vn := e.put(3050, val)
		return e.callIn(e.h, proxyAddHeaderMapValue, uint64(kind), k, kn, v, vn)
	}
	get := func(kind uint32, name string) (uint64, string) {
		k, kn := e.put(3000, name)
		st := e.callIn(e.h, proxyGetHeaderMapValue, uint64(kind), k, kn, uint64(ret), uint64(retSize))
		if st != statusOK {
			return st, ""
		}
		return st, e.got(ret, retSize)
	}
	req := &e.h.c.Request.Header

	// Not chunked: the write is dropped.
	if st := write(mapRequestTrailers, "x-t", "1"); st != statusOK || len(req.PeekTrailerKeys()) != 0 {
		t.Errorf("write to a request of known length: status %d, trailers %q; want Ok and none", st, req.PeekTrailerKeys())
	}
	if st, _ := get(mapRequestTrailers, "x-t"); st != statusNotFound {
		t.Errorf("get from a request of known length: status %d, want NotFound", st)
	}

	e.h.reqChunked = true
	for name, want := range map[string]uint64{
		"x-t": statusOK, ":path": statusBadArgument, "content-type": statusBadArgument,
		"x-one": statusBadArgument, "transfer-encoding": statusOK,
	} {
		if st := write(mapRequestTrailers, name, "v"); st != want {
			t.Errorf("add request trailer %s: status %d, want %d", name, st, want)
		}
	}
	if keys := req.PeekTrailerKeys(); len(keys) != 1 || !strings.EqualFold(string(keys[0]), "x-t") {
		t.Errorf("request trailers %q, want only x-t", keys)
	}
	if st, v := get(mapRequestTrailers, "X-T"); st != statusOK || v != "v" {
		t.Errorf("get X-T: status %d %q, want v", st, v)
	}
	if st := write(mapResponseTrailer, "x-t", "1"); st != statusBadArgument {
		t.Errorf("response trailer write in the request phase: status %d, want BadArgument", st)
	}

	e.h.response = true
	if st := write(mapRequestTrailers, "x-t", "2"); st != statusBadArgument {
		t.Errorf("request trailer write in the response phase: status %d, want BadArgument", st)
	}
	if st, v := get(mapRequestTrailers, "x-t"); st != statusOK || v != "v" {
		t.Errorf("request trailer in the response phase: status %d %q, want v", st, v)
	}
}
