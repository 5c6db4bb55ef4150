package edge

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
)

// Stream is the HTTP/2 stream behind a request that arrived over HTTP/2. The engine serves
// each stream as a fasthttp.RequestCtx through the same edge checks, routes, filters and
// plugins as an HTTP/1.1 request, then writes the RequestCtx's response on the stream.
//
// A terminal step that must answer on the stream itself (a streamed response with trailers,
// such as gRPC) writes to W and sets Answered: the engine then writes nothing more. Filters
// never use a Stream; they see the request and response through the Ctx as on HTTP/1.1.
type Stream struct {
	W http.ResponseWriter
	R *http.Request
	// Answered is set by whoever wrote the response on W directly.
	Answered bool
}

// StreamOf returns the HTTP/2 stream behind rc, or nil for a request that did not arrive over
// HTTP/2. On HTTP/1.1 it costs one type switch.
func StreamOf(rc *fasthttp.RequestCtx) *Stream {
	switch c := rc.Conn().(type) {
	case *StreamConn:
		return &c.Stream
	case *TLSStreamConn:
		return &c.Stream
	}
	return nil
}

// ErrStreamConn fails a read or write on the connection of a request served from an HTTP/2
// stream: the connection carries many streams in frames, and only the HTTP/2 server may touch
// it.
var ErrStreamConn = errors.New("request arrived over http/2: use the request and response, not the connection")

// StreamConn is what RequestCtx.Conn returns for a request served from an HTTP/2 stream over
// plain TCP (h2c): the addresses of the real connection, and deadlines that apply to the
// stream alone (a request body's read deadline must not cut the other streams of the
// connection). Reads and writes fail with ErrStreamConn.
type StreamConn struct {
	Stream
	Local, Remote net.Addr
}

// TLSStreamConn is StreamConn for a stream of a TLS connection: RequestCtx.IsTLS and
// TLSConnectionState see the connection's TLS state through it.
type TLSStreamConn struct {
	StreamConn
	State *tls.ConnectionState
}

// Handshake is done: the stream exists only after the connection's handshake.
func (c *TLSStreamConn) Handshake() error { return nil }

// ConnectionState is the TLS state of the stream's connection.
func (c *TLSStreamConn) ConnectionState() tls.ConnectionState { return *c.State }

func (c *StreamConn) Read([]byte) (int, error)  { return 0, ErrStreamConn }
func (c *StreamConn) Write([]byte) (int, error) { return 0, ErrStreamConn }

// Close does nothing: the stream ends when its handler returns.
func (c *StreamConn) Close() error         { return nil }
func (c *StreamConn) LocalAddr() net.Addr  { return c.Local }
func (c *StreamConn) RemoteAddr() net.Addr { return c.Remote }

func (c *StreamConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

// SetReadDeadline bounds the reads of the stream's request body.
func (c *StreamConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.W.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return http.ErrNotSupported
}

// SetWriteDeadline bounds the writes of the stream's response.
func (c *StreamConn) SetWriteDeadline(t time.Time) error {
	if d, ok := c.W.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return d.SetWriteDeadline(t)
	}
	return http.ErrNotSupported
}
