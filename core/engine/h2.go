package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/core/proxy"
)

// h2front serves HTTP/2 clients. fasthttp has no HTTP/2 server, so golang.org/x/net/http2
// speaks the protocol, and each of its streams is turned into a fasthttp.RequestCtx served by
// the same Engine.Handle as an HTTP/1.1 request: the same edge checks, routes, filters, plugins
// and upstreams. The response the pipeline leaves in the RequestCtx is then written on the
// stream. RATIONALE.md says why and what it costs.
//
// Connections reach it from the fasthttp server's own goroutine for the connection: TLS ones
// that negotiated "h2" through fasthttp's NextProto hook, plain ones that open with the h2c
// preface through edge.SniffH2C. Either way the fasthttp server keeps counting the connection
// against its limits, and waits for it when shutting down.
type h2front struct {
	e      *Engine
	srv    *http2.Server
	base   *http.Server // carries the settings x/net reads from net/http; its Shutdown sends GOAWAY
	limits edge.H2Limits
	write  time.Duration // server.write_timeout, for writing a response as on HTTP/1.1
	log    fasthttpLogger

	reqs sync.Pool // of *h2request
	bufs sync.Pool // of *[]byte, for copying streamed bodies

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open HTTP/2 connections, closed when a shutdown times out
}

// newH2 prepares HTTP/2 for the engine's listeners, or returns nil when none speaks it. h2
// over TLS is registered with each h2 listener's fasthttp server (srv.NextProto); h2c is
// added to each h2c listener's socket (listener).
func (e *Engine) newH2(sc config.Server) *h2front {
	hc := sc.HTTP2
	if !slices.ContainsFunc(e.listeners, func(l *listener) bool { return l.h2() || l.h2c() }) {
		return nil
	}
	f := &h2front{
		e: e,
		srv: &http2.Server{
			MaxConcurrentStreams: uint32(hc.MaxConcurrentStreams),
			IdleTimeout:          sc.IdleTimeout,
			// A connection on which nothing can be written for write_timeout is closed.
			WriteByteTimeout: sc.WriteTimeout,
		},
		// ReadTimeout and WriteTimeout stay 0: x/net would apply them to a whole stream from
		// its start, which would cut long streamed responses. A request body is bounded by
		// server.body_timeout (readBody), a response's writing by write below.
		base: &http.Server{MaxHeaderBytes: sc.MaxHeaderBytes, IdleTimeout: sc.IdleTimeout,
			ErrorLog: log.New(h2Log{e.log}, "", 0)},
		limits: edge.H2Limits{
			ResetsPerSecond: hc.MaxResetsPerSecond, PingsPerSecond: hc.MaxPingsPerSecond,
			SettingsPerSecond: hc.MaxSettingsPerSecond, ContinuationFrames: hc.MaxContinuationFrames,
		},
		write: sc.WriteTimeout,
		log:   fasthttpLogger{e.log},
		conns: map[net.Conn]struct{}{},
	}
	f.reqs.New = func() any { return new(h2request) }
	f.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	// Registers f.base.Shutdown to send GOAWAY on every connection f.srv serves.
	if err := http2.ConfigureServer(f.base, f.srv); err != nil {
		e.log.Error().Err(err).Msg("http/2 is off")
		return nil
	}
	for _, l := range e.listeners {
		if l.h2() {
			l.srv.NextProto(http2.NextProtoTLS, func(c net.Conn) error {
				f.serveConn(c, l)
				return nil
			})
		}
	}
	return f
}

// h2Log takes x/net's log lines (a client's protocol error, a connection over a flood limit)
// into the structured log.
type h2Log struct{ log zerolog.Logger }

func (l h2Log) Write(p []byte) (int, error) {
	l.log.Warn().Str("component", "http2").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// listener adds the h2c sniff to the socket of a plain listener l that speaks h2c.
func (f *h2front) listener(ln net.Listener, l *listener) net.Listener {
	if f == nil || !l.h2c() {
		return ln
	}
	return edge.SniffH2C(ln, func(c net.Conn) { f.serveConn(c, l) })
}

// h2conn is what a stream's handler knows of its connection.
type h2conn struct {
	local, remote net.Addr
	tls           *tls.ConnectionState // nil for h2c
	l             *listener            // the listener it arrived on
}

type h2connKey struct{}

// serveConn serves one HTTP/2 connection that arrived on listener l until it is done.
func (f *h2front) serveConn(c net.Conn, l *listener) {
	f.mu.Lock()
	f.conns[c] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}()
	info := &h2conn{local: c.LocalAddr(), remote: c.RemoteAddr(), l: l}
	// Not *tls.Conn: the connection may come wrapped (edge.Park), with the same method.
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := tc.ConnectionState()
		info.tls = &st
	}
	ctx := context.WithValue(context.Background(), h2connKey{}, info)
	f.srv.ServeConn(edge.MeterH2(c, f.limits), &http2.ServeConnOpts{Context: ctx, BaseConfig: f.base, Handler: f})
}

// shutdown sends GOAWAY on every HTTP/2 connection: each finishes its open streams and closes.
func (f *h2front) shutdown(ctx context.Context) {
	if f != nil {
		_ = f.base.Shutdown(ctx) // serves no connection itself: returns once GOAWAYs are queued
	}
}

// closeAll closes the HTTP/2 connections still open when a shutdown's time is up.
func (f *h2front) closeAll() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close()
	}
}

// h2request is the pooled state of one stream: the RequestCtx the pipeline sees and the
// connection it reports.
type h2request struct {
	rc   fasthttp.RequestCtx
	conn edge.TLSStreamConn // conn.StreamConn alone for h2c
	body h2body
}

// h2body hides the Close of a stream's request body: fasthttp closes a body stream it
// replaces, and the engine replaces it with what it buffered followed by the rest of the same
// stream. x/net/http2 closes the body itself when the handler returns.
type h2body struct{ r io.Reader }

func (b *h2body) Read(p []byte) (int, error) { return b.r.Read(p) }

// ServeHTTP serves one stream as its listener serves an HTTP/1.1 request (Engine.handle).
func (f *h2front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info, _ := r.Context().Value(h2connKey{}).(*h2conn)
	if info == nil {
		http.Error(w, "no connection", http.StatusInternalServerError)
		return
	}
	q := f.reqs.Get().(*h2request)
	sc := &q.conn.StreamConn
	sc.Stream = edge.Stream{W: w, R: r}
	sc.Local, sc.Remote = info.local, info.remote
	var conn net.Conn = sc
	if info.tls != nil {
		q.conn.State = info.tls
		conn = &q.conn
	}
	rc := &q.rc
	rc.Init2(conn, f.log, false)
	// As the engine's fasthttp server does for HTTP/1.1 (NoDefaultContentType): a response
	// without a Content-Type gets none.
	rc.Response.Header.SetNoDefaultContentType(true)
	q.body.r = r.Body
	if status, err := toFastHTTP(&rc.Request, r, &q.body); err != nil {
		f.e.framing.Add(1)
		f.e.reject(rc, status, err, rc.Time())
	} else {
		f.e.handle(rc, info.l)
	}
	broken := false
	switch {
	case sc.Answered:
	case proxy.IsGRPC(rc.Request.Header.ContentType()) && !proxy.IsGRPC(rc.Response.Header.ContentType()):
		// A gRPC client cannot read an HTTP error: the gateway's answer (no route, a filter's
		// refusal, an upstream error) becomes a gRPC status.
		st := rc.Response.StatusCode()
		proxy.WriteGRPCStatus(w, proxy.GRPCStatusFromHTTP(st), "gateway: "+fasthttp.StatusMessage(st))
	default:
		broken = f.writeResponse(w, r, &rc.Response)
	}
	// Reset closes the body streams: the client's, and the upstream's (which returns its
	// connection to the pool when it was read to the end).
	rc.Request.Reset()
	rc.Response.Reset()
	sc.Stream = edge.Stream{}
	q.conn.State = nil
	q.body.r = nil
	f.reqs.Put(q)
	if broken {
		// The upstream's body broke off: the stream is reset (RST_STREAM INTERNAL_ERROR)
		// rather than ended, so the client cannot take a truncated body for a whole one, as
		// an HTTP/1.1 client sees the connection close before the last chunk.
		panic(http.ErrAbortHandler)
	}
}

var (
	errH2Target        = errors.New(":path has bytes that cannot be forwarded (control bytes or spaces)")
	errH2ConnField     = errors.New("connection-specific field in an http/2 request (rfc 9113 section 8.2.2)")
	errH2FieldValue    = errors.New("field value with control bytes or surrounding whitespace")
	errH2ContentLength = errors.New("content-length invalid, repeated, or not the length of the body")
)

// toFastHTTP copies an HTTP/2 request into req, refusing (400) what an HTTP/1.1 upstream could
// read differently from the gateway. x/net/http2 already resets streams with most of it
// (connection-specific fields, a Host that disagrees with :authority, invalid field bytes);
// the checks here hold whatever the library lets through, since the request leaves as
// HTTP/1.1, where each of these would let a client smuggle a second request.
func toFastHTTP(req *fasthttp.Request, r *http.Request, body io.Reader) (int, error) {
	if !forwardableTarget(r.RequestURI) {
		return fasthttp.StatusBadRequest, errH2Target
	}
	h := &req.Header
	h.SetMethod(r.Method)
	h.SetRequestURI(r.RequestURI)
	h.SetHost(r.Host) // :authority, or the Host field; x/net removed a matching Host field
	if !forwardableValue(r.Host) {
		return fasthttp.StatusBadRequest, errH2FieldValue
	}
	var declared []string
	for k, vv := range r.Header {
		switch k {
		case "Content-Length":
			declared = vv
			continue
		case "Host", "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			return fasthttp.StatusBadRequest, errH2ConnField
		case "Te":
			// "trailers" is the only TE allowed in HTTP/2; as a hop-by-hop field it is not
			// forwarded anyway.
			if len(vv) != 1 || !strings.EqualFold(vv[0], "trailers") {
				return fasthttp.StatusBadRequest, errH2ConnField
			}
			continue
		}
		for _, v := range vv {
			if !forwardableValue(v) {
				return fasthttp.StatusBadRequest, errH2FieldValue
			}
			h.Add(k, v)
		}
	}
	// x/net sets ContentLength from the first Content-Length field when the stream has a body
	// (-1 without one), 0 when HEADERS ended the stream; it resets a stream whose DATA exceed or
	// fall short of it.
	if len(declared) > 1 {
		return fasthttp.StatusBadRequest, errH2ContentLength
	}
	if len(declared) == 1 {
		n, err := strconv.ParseUint(declared[0], 10, 63)
		if err != nil || declared[0][0] == '+' || int64(n) != r.ContentLength {
			return fasthttp.StatusBadRequest, errH2ContentLength
		}
	}
	if r.ContentLength != 0 {
		req.SetBodyStream(body, int(r.ContentLength))
	} else if len(declared) == 1 {
		h.SetContentLength(0)
	}
	return 0, nil
}

// forwardableTarget reports a :path that can be written as an HTTP/1.1 request-target: no
// control bytes, spaces or DEL.
func forwardableTarget(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// forwardableValue reports a field value without control bytes (HTAB aside) and without
// leading or trailing whitespace (RFC 9113 section 8.2.1).
func forwardableValue(v string) bool {
	if v == "" {
		return true
	}
	if c := v[0]; c == ' ' || c == '\t' {
		return false
	}
	if c := v[len(v)-1]; c == ' ' || c == '\t' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !httpsyntax.IsValueByte(v[i]) {
			return false
		}
	}
	return true
}

// writeResponse writes the pipeline's response on the stream: status, fields (without those
// HTTP/2 forbids or frames itself), body (a streamed body copied as it arrives, flushed after
// every read so that server-sent events and long polls flow), then trailers the upstream sent.
// It reports a streamed body that broke off before its end.
func (f *h2front) writeResponse(w http.ResponseWriter, r *http.Request, resp *fasthttp.Response) (broken bool) {
	hdr := w.Header()
	for k, v := range resp.Header.All() {
		if httpsyntax.IsHopByHop(k) || httpsyntax.EqualFold(k, "Content-Length") {
			continue
		}
		key := string(k)
		hdr[key] = append(hdr[key], string(v))
	}
	if _, ok := hdr["Content-Type"]; !ok {
		// Present but empty: x/net would otherwise sniff one from the body, which HTTP/1.1
		// clients of the same upstream do not get.
		hdr["Content-Type"] = nil
	}
	status := resp.StatusCode()
	noBody := status < 200 || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified
	switch {
	case noBody:
		w.WriteHeader(status)
	case r.Method == fasthttp.MethodHead:
		if cl := resp.Header.ContentLength(); cl >= 0 {
			hdr["Content-Length"] = []string{strconv.Itoa(cl)}
		}
		w.WriteHeader(status)
	case !resp.IsBodyStream():
		body := resp.Body()
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
		if len(body) > smallBody {
			f.writeDeadline(w)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	default:
		if cl := resp.Header.ContentLength(); cl >= 0 {
			hdr["Content-Length"] = []string{strconv.Itoa(cl)}
		}
		f.writeDeadline(w)
		w.WriteHeader(status)
		return f.copyBody(w, resp)
	}
	return false
}

// smallBody is a body that fits any client's initial flow-control window (RFC 9113: 65,535
// bytes unless the client says otherwise), so writing it cannot wait on the client.
const smallBody = 16 << 10

// writeDeadline bounds the writing of a response that may wait on the client's flow control
// with server.write_timeout, as on HTTP/1.1. x/net sets a stream's deadline through its
// connection's goroutine (a message and a timer), so small bodies, which cannot stall, skip it;
// http2.Server.WriteByteTimeout still bounds a connection that takes no bytes at all.
func (f *h2front) writeDeadline(w http.ResponseWriter) {
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok && f.write > 0 {
		_ = d.SetWriteDeadline(time.Now().Add(f.write))
	}
}

// copyBody copies a streamed body to the stream, flushing after every read. It reports a body
// that failed before its end.
func (f *h2front) copyBody(w http.ResponseWriter, resp *fasthttp.Response) (broken bool) {
	src := resp.BodyStream()
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := *bp
	fl, _ := w.(http.Flusher)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false // the client went away; Reset closes the upstream's body
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return true
		}
	}
	// The upstream's trailers, when it sent any after a chunked body (the proxy's response
	// stream exposes them once read to the end).
	if t, ok := src.(interface{ Trailers(func(k, v []byte)) }); ok {
		hdr := w.Header()
		t.Trailers(func(k, v []byte) {
			if !httpsyntax.IsFraming(k) {
				key := http.TrailerPrefix + string(k)
				hdr[key] = append(hdr[key], string(v))
			}
		})
	}
	return false
}
