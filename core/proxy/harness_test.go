package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
)

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// serve runs a fasthttp server configured like the engine's on a loopback port and stops it
// when the test ends.
func serve(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{
		Handler:           h,
		StreamRequestBody: true,
		Logger:            nopLogger{},
		ReadTimeout:       30 * time.Second,
		// Multipart pre-parsing would spool bodies to disk before the handler runs.
		DisablePreParseMultipartForm: true,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

// gateway is a minimal stand-in for the engine: CheckFraming → 400 and close; Sanitize; then the
// terminal step.
func gateway(t testing.TB, trusted *edge.Trusted, terminal func(*filter.Ctx)) string {
	return serve(t, func(ctx *fasthttp.RequestCtx) {
		if err := edge.CheckFraming(ctx); err != nil {
			ctx.Response.SetConnectionClose()
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(filter.ErrorBody(fasthttp.StatusBadRequest))
			return
		}
		edge.Sanitize(ctx, trusted)
		var c filter.Ctx
		c.Reset(ctx, "test")
		terminal(&c)
	})
}

func newUpstream(t testing.TB, o Options) *Upstream {
	t.Helper()
	if o.Name == "" {
		o.Name = "test"
	}
	u, err := newStandalone(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

// rawBackend is an upstream that records every byte it receives and counts the requests it
// managed to parse completely. reply writes the raw response for each parsed request.
type rawBackend struct {
	ln       net.Listener
	mu       sync.Mutex
	got      bytes.Buffer
	complete int
	reply    func(req *fasthttp.Request, w io.Writer)
	wg       sync.WaitGroup
	conns    map[net.Conn]struct{}
}

func newRawBackend(t testing.TB, reply func(req *fasthttp.Request, w io.Writer)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln, reply: reply, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.close)
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

func (b *rawBackend) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serveConn(c)
	}
}

func (b *rawBackend) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got.Write(p)
}

func (b *rawBackend) serveConn(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		_ = c.Close()
	}()
	br := bufio.NewReader(io.TeeReader(c, b))
	for {
		var req fasthttp.Request
		if err := req.Read(br); err != nil {
			return
		}
		b.mu.Lock()
		b.complete++
		b.mu.Unlock()
		b.reply(&req, c)
	}
}

func (b *rawBackend) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *rawBackend) received() (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got.String(), b.complete
}

func replyOK(_ *fasthttp.Request, w io.Writer) {
	_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
}

// rawExchange sends raw bytes to addr and returns the parsed response and whether the server
// closed the connection afterwards.
func rawExchange(t testing.TB, addr, raw string) (*fasthttp.Response, bool) {
	return rawExchangeClose(t, addr, raw, true)
}

// rawExchangeClose is rawExchange; with waitClose false it does not wait to learn whether the
// connection closes (which costs a read timeout when it stays open).
func rawExchangeClose(t testing.TB, addr, raw string, waitClose bool) (*fasthttp.Response, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp := &fasthttp.Response{SkipBody: strings.HasPrefix(raw, "HEAD ")}
	if err := resp.Read(br); err != nil {
		t.Fatalf("read response to %q: %v", raw, err)
	}
	if !waitClose {
		return resp, false
	}
	// A closed connection reads EOF (or reset); an open one times out.
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	var ne net.Error
	closed := err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return resp, closed
}

// do sends a simple request through a fasthttp client and returns status, header and body.
func do(t testing.TB, addr string, prepare func(req *fasthttp.Request)) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + "/")
	if prepare != nil {
		prepare(req)
	}
	resp := &fasthttp.Response{}
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("request: %v", err)
	}
	return resp
}

// newStandalone builds an upstream with a pool of its own, closed with it.
func newStandalone(o Options) (*Upstream, error) {
	p, err := NewPool(o)
	if err != nil {
		return nil, err
	}
	u, err := p.Upstream(o)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	u.ownPool = true
	return u, nil
}
