package edge

import (
	"crypto/tls"
	"errors"
	"net"

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
// Connections that carry TLS are returned as they are: their first byte is the decrypted
// request's, and the server needs their TLS state. The check costs one comparison per read
// after the first, and one small allocation per connection.
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

type guardConn struct {
	net.Conn
	checked bool
}

// NetConn is the guarded connection, for what needs its own methods (a WebSocket tunnel
// half-closes it with CloseWrite).
func (c *guardConn) NetConn() net.Conn { return c.Conn }

func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.checked && n > 0 {
		c.checked = true
		if b := p[0]; !httpsyntax.IsTokenByte(b) && b != '\r' && b != '\n' {
			return 0, ErrNotHTTP
		}
	}
	return n, err
}
