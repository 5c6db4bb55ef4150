package edge

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// ErrNotHTTP fails the first read of a connection whose first byte cannot begin an HTTP/1
// request; the server answers it with 400 and closes the connection.
var ErrNotHTTP = errors.New("connection does not start with an http/1 request (a tls handshake on a plain listener?)")

// GuardPlain wraps a listener so that a plain connection whose first byte cannot begin an
// HTTP/1 request line (a token byte, or the CR/LF of an empty line a server skips) fails its
// first read with ErrNotHTTP. fasthttp waits for the end of the request line before it
// judges one, and a TLS ClientHello (first byte 0x16) sent to a plain listener has none: it
// would hold the connection, unanswered, until the read timeout. The fasthttp server hands
// an error on a connection's first read to its ErrorHandler, which answers at once.
//
// Every request the connection then carries is followed as it is read (reqScan): a head
// line ending in a bare LF fails the read with ErrBareLF, chunk extensions over their bounds
// with ErrChunkExt. fasthttp recognises only CRLFCRLF as the end of a head and skips
// extensions without a bound, so both would otherwise hold the connection until a timeout.
// The server answers the failed read with 400 and closes the connection: the head's through
// the ErrorHandler, the body's through the engine's body read.
//
// Connections that carry TLS are returned as they are: their first byte is the decrypted
// request's, and the server needs their TLS state; GuardTLS follows their requests. The
// checks cost a few comparisons and one bytes.IndexByte per head line, and one small
// allocation per connection.
func GuardPlain(ln net.Listener) net.Listener { return guardListener{ln} }

type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if _, isTLS := c.(*tls.Conn); isTLS {
		return c, nil
	}
	return &guardConn{Conn: c}, nil
}

// GuardTLS wraps a listener whose connections carry TLS (*tls.Conn, or a Parker's wrapper of
// one) so that their requests are followed as GuardPlain's are; other connections are
// returned as they are. It goes outside the Parker, which recognises only a *tls.Conn as
// one that carries TLS, so a connection woken from parking is wrapped afresh: it wakes
// between two requests, where a new scan starts. The server's ConnState must then be
// ConnState rather than ParkConnState. A connection that negotiated another protocol than
// HTTP/1.1 (h2, served from fasthttp's NextProto hook through this wrapper) is not followed.
func GuardTLS(ln net.Listener) net.Listener { return tlsGuardListener{ln} }

type tlsGuardListener struct{ net.Listener }

// tlsConn is what fasthttp, x/net/http2 and the engine read a connection's TLS state through.
type tlsConn interface {
	net.Conn
	Handshake() error
	ConnectionState() tls.ConnectionState
}

func (l tlsGuardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	tc, ok := c.(tlsConn)
	if !ok {
		return c, nil
	}
	return &guardTLSConn{guardConn: guardConn{Conn: c, tls: tc}}, nil
}

// ConnState is the fasthttp server's ConnState hook for listeners wrapped by GuardTLS outside
// a Parker: it hands ParkConnState the Parker's own connection.
func ConnState(c net.Conn, st fasthttp.ConnState) {
	if g, ok := c.(*guardTLSConn); ok {
		c = g.Conn
	}
	ParkConnState(c, st)
}

type guardConn struct {
	net.Conn
	tls     tlsConn // the same connection, when it carries TLS
	checked bool    // the first read was seen
	scan    reqScan
}

// NetConn is the guarded connection, for what needs its own methods (a WebSocket tunnel
// half-closes it with CloseWrite).
func (c *guardConn) NetConn() net.Conn { return c.Conn }

func (c *guardConn) Read(p []byte) (int, error) {
	switch c.scan.state {
	case scLost:
		return c.Conn.Read(p)
	case scFailed:
		return 0, c.scan.err
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	if !c.checked {
		c.checked = true
		if c.tls != nil {
			// The handshake is done once a read returned data.
			if proto := c.tls.ConnectionState().NegotiatedProtocol; proto != "" && proto != "http/1.1" {
				c.scan.lose()
				return n, err
			}
		} else if b := p[0]; !httpsyntax.IsTokenByte(b) && b != '\r' && b != '\n' {
			c.scan.state, c.scan.err = scFailed, ErrNotHTTP
			return 0, ErrNotHTTP
		}
	}
	if m, ferr := c.scan.feed(p[:n]); ferr != nil {
		return m, ferr
	}
	return n, err
}

// guardTLSConn is a guarded connection that carries TLS, with the methods its TLS state is
// read through.
type guardTLSConn struct{ guardConn }

func (c *guardTLSConn) Handshake() error                     { return c.tls.Handshake() }
func (c *guardTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }
