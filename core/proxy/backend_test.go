package proxy

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// ctlBackend is a real HTTP backend on loopback that a test can slow down, make fail, kill
// (listener and every connection closed at once, like a crashed process) and bring back on the
// same address.
type ctlBackend struct {
	t    testing.TB
	addr string
	name string

	hits   atomic.Int64
	delay  atomic.Int64 // nanoseconds added to every response
	status atomic.Int64 // 0: 200
	// retryAfter, when set, is sent with a failing status.
	retryAfter atomic.Value
	// wakeCh ends the delays of the requests waiting now.
	wakeCh atomic.Pointer[chan struct{}]

	mu    sync.Mutex
	srv   *fasthttp.Server
	ln    *trackListener
	done  chan struct{}
	quit  chan struct{} // ends the delays of a killed server's handlers
	alive bool
}

func newCtlBackend(t testing.TB, name string) *ctlBackend {
	t.Helper()
	b := &ctlBackend{t: t, name: name}
	wake := make(chan struct{})
	b.wakeCh.Store(&wake)
	b.retryAfter.Store("")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.start(ln)
	t.Cleanup(b.kill)
	return b
}

func (b *ctlBackend) handler(quit chan struct{}) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		b.hits.Add(1)
		if d := time.Duration(b.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-quit:
			case <-*b.wakeCh.Load():
			}
		}
		ctx.Response.Header.Set("X-Backend", b.name)
		if st := int(b.status.Load()); st != 0 {
			if ra := b.retryAfter.Load().(string); ra != "" {
				ctx.Response.Header.Set("Retry-After", ra)
			}
			ctx.SetStatusCode(st)
			return
		}
		ctx.SetBodyString(b.name)
	}
}

func (b *ctlBackend) start(ln net.Listener) {
	tl := &trackListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	quit := make(chan struct{})
	s := &fasthttp.Server{Handler: b.handler(quit), Logger: nopLogger{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(tl)
	}()
	b.mu.Lock()
	b.srv, b.ln, b.done, b.quit, b.alive = s, tl, done, quit, true
	b.mu.Unlock()
}

// wake ends the delays of the requests the backend holds now.
func (b *ctlBackend) wake() {
	next := make(chan struct{})
	close(*b.wakeCh.Swap(&next))
}

// kill closes the listener and every connection at once.
func (b *ctlBackend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.alive {
		return
	}
	b.alive = false
	close(b.quit)
	b.ln.closeAll()
	<-b.done
}

// revive listens again on the same address.
func (b *ctlBackend) revive() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("revive %s: %v", b.addr, err)
	}
	b.start(ln)
}

type trackListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return c, nil
}

func (l *trackListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	_ = l.Listener.Close()
	for c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as when a process dies
		}
		_ = c.Close()
	}
}

// client is a keep-alive HTTP client for a gateway address.
func newClient(gw string) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: gw, MaxConns: 256, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}

// get sends one GET with an optional header and returns status and X-Backend.
func get(hc *fasthttp.HostClient, hdr, val string) (int, string, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + hc.Addr + "/")
	if hdr != "" {
		req.Header.Set(hdr, val)
	}
	err := hc.DoTimeout(req, resp, 10*time.Second)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Header.Peek("X-Backend")), nil
}

func addrsOf(bs []*ctlBackend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.addr
	}
	return out
}

func backends(t testing.TB, n int) []*ctlBackend {
	bs := make([]*ctlBackend, n)
	for i := range bs {
		bs[i] = newCtlBackend(t, "b"+strconv.Itoa(i))
	}
	return bs
}

// viewGateway serves u's default route on loopback.
func viewGateway(t testing.TB, u *Upstream) string {
	return gateway(t, nil, func(c *filter.Ctx) { u.Forward(c) })
}
