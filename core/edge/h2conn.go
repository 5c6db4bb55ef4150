package edge

import (
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// h2Preface is the client connection preface of HTTP/2 (RFC 9113 section 3.4). A client that
// speaks h2c with prior knowledge sends it first, in place of an HTTP/1 request line.
const h2Preface = http2.ClientPreface

// SniffH2C wraps a plain listener so that a connection opening with the HTTP/2 client preface
// is served by serve (which must not return before the connection is done with), while every
// other connection goes on to the HTTP/1 server unchanged. TLS connections are returned as they
// are: ALPN, not the first bytes, says what they speak.
//
// The sniff happens in the connection's first read, in the HTTP/1 server's goroutine for the
// connection, so a client that sends nothing holds no accept loop; only a connection whose
// first bytes could begin the preface reads further before being judged. An HTTP/2
// connection thus stays counted against the HTTP/1 server's connection limits
// (server.max_conns, max_conns_per_ip) for as long as it is open. The HTTP/1 server then sees
// the connection end cleanly, as if the client had sent nothing.
//
// For HTTP/1 it costs one small allocation per connection and one comparison per read.
func SniffH2C(ln net.Listener, serve func(net.Conn)) net.Listener {
	return sniffListener{ln, serve}
}

type sniffListener struct {
	net.Listener
	serve func(net.Conn)
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if _, isTLS := c.(*tls.Conn); isTLS {
		return c, nil
	}
	return &sniffConn{Conn: c, serve: l.serve}, nil
}

type sniffConn struct {
	net.Conn
	serve   func(net.Conn)
	sniffed bool        // only the HTTP/1 server's goroutine uses it
	h2      atomic.Bool // Close may come from a shutdown in another goroutine
}

// NetConn is the connection under the sniff, for CloseWrite (a WebSocket tunnel half-closes).
func (c *sniffConn) NetConn() net.Conn { return c.Conn }

func (c *sniffConn) Read(p []byte) (int, error) {
	if c.sniffed {
		// After HTTP/2 the HTTP/1 server reads no more: it saw the end of the connection.
		return c.Conn.Read(p)
	}
	c.sniffed = true
	n, err := c.Conn.Read(p)
	if n == 0 || p[0] != h2Preface[0] || len(p) < len(h2Preface) {
		return n, err
	}
	// Whatever starts like the preface is read until it is whole or stops matching. The HTTP/1
	// server's read deadline still applies.
	for err == nil && n < len(h2Preface) && string(p[:n]) == h2Preface[:n] {
		var m int
		m, err = c.Conn.Read(p[n:])
		n += m
	}
	if n < len(h2Preface) || string(p[:len(h2Preface)]) != h2Preface {
		return n, err
	}
	c.h2.Store(true)
	// The HTTP/2 server keeps its own timeouts; the HTTP/1 server's first-read deadline
	// must not cut the connection.
	if err := c.Conn.SetDeadline(time.Time{}); err != nil {
		return 0, err
	}
	c.serve(&prefixedConn{Conn: c.Conn, buf: append([]byte(nil), p[:n]...)})
	return 0, io.EOF
}

// Close is ignored once the connection was handed to HTTP/2: the HTTP/1 server's shutdown
// takes it for idle (it never finished a request), and HTTP/2 closes it itself, after a
// GOAWAY.
func (c *sniffConn) Close() error {
	if c.h2.Load() {
		return nil
	}
	return c.Conn.Close()
}

// prefixedConn returns buf before reading on from the connection: the bytes the sniff took.
type prefixedConn struct {
	net.Conn
	buf []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// H2Limits bound the frames one HTTP/2 connection may make the server answer or track
// (config.HTTP2). Rates are per second, with a burst of ten seconds' worth.
type H2Limits struct {
	ResetsPerSecond, PingsPerSecond, SettingsPerSecond int
	// ContinuationFrames is the most CONTINUATION frames one header block may span.
	ContinuationFrames int
}

// errH2Flood makes the HTTP/2 server answer with GOAWAY ENHANCE_YOUR_CALM and close the
// connection: it treats a ConnectionError from a read as the peer's protocol error.
var errH2Flood error = http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)

// MeterH2 wraps a connection about to be served by the HTTP/2 server so that its frames are
// counted as they are read, and a client over one of the limits gets GOAWAY
// (ENHANCE_YOUR_CALM). golang.org/x/net/http2 has no such rate limits of its own: it bounds
// only control frames queued for a client that stops reading, and queued handlers (rapid
// reset against slow handlers). The count reads the 9-byte frame headers passing by, nothing
// else, and costs a clock read per counted frame.
//
// A TLS connection stays recognisable as TLS to the HTTP/2 server (its ConnectionState).
func MeterH2(c net.Conn, l H2Limits) net.Conn {
	m := &meteredConn{Conn: c, skip: len(h2Preface), cont: l.ContinuationFrames}
	m.resets.init(l.ResetsPerSecond)
	m.pings.init(l.PingsPerSecond)
	m.settings.init(l.SettingsPerSecond)
	// Not only *tls.Conn: a TLS connection may come wrapped (Park), with the same method.
	if tc, ok := c.(connectionStater); ok {
		return &meteredTLSConn{meteredConn: m, tc: tc}
	}
	return m
}

type connectionStater interface{ ConnectionState() tls.ConnectionState }

type meteredConn struct {
	net.Conn
	skip    int // preface bytes still to pass
	hdr     [9]byte
	hn      int // bytes of hdr filled
	payload int // payload bytes of the current frame still to pass

	resets, pings, settings bucket
	cont, inBlock           int // limit; CONTINUATION frames so far in the open header block
	flooded                 bool
	// busy: a HEADERS or non-empty DATA frame came since the last PING. gRPC clients ping
	// once per round trip while messages flow (grpc-go's bandwidth estimator), far above any
	// fixed rate; like gRPC's own servers, which count a ping as a strike only when no data
	// passed since the one before, a ping amid requests is not counted against the limit. A
	// flood of pings alone still is, and one that buys each ping with a request or body byte
	// costs the client as much as the server.
	busy bool
}

type meteredTLSConn struct {
	*meteredConn
	tc connectionStater
}

func (c *meteredTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

func (c *meteredConn) Read(p []byte) (int, error) {
	if c.flooded {
		return 0, errH2Flood
	}
	n, err := c.Conn.Read(p)
	if !c.scan(p[:n]) {
		c.flooded = true
		return 0, errH2Flood
	}
	return n, err
}

// Frame types and flags (RFC 9113 section 6) the meter counts.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameContinuation = 0x9
	flagAck           = 0x1
	flagEndHeaders    = 0x4
)

// scan follows the frame boundaries in b and counts each frame header; false means over a limit.
func (c *meteredConn) scan(b []byte) bool {
	for len(b) > 0 {
		switch {
		case c.skip > 0:
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
			continue
		case c.payload > 0:
			k := min(c.payload, len(b))
			c.payload -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hn:], b)
		c.hn += k
		b = b[k:]
		if c.hn < len(c.hdr) {
			return true
		}
		c.hn = 0
		c.payload = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		if !c.count(c.hdr[3], c.hdr[4]) {
			return false
		}
	}
	return true
}

func (c *meteredConn) count(typ, flags byte) bool {
	switch typ {
	case frameRSTStream:
		return c.resets.take()
	case framePing:
		if flags&flagAck != 0 {
			return true
		}
		if c.busy {
			c.busy = false
			return true
		}
		return c.pings.take()
	case frameData:
		if c.payload > 0 {
			c.busy = true
		}
	case frameSettings:
		return flags&flagAck != 0 || c.settings.take()
	case frameHeaders:
		c.inBlock = 0
		c.busy = true
	case frameContinuation:
		c.inBlock++
		if c.inBlock > c.cont {
			return false
		}
		if flags&flagEndHeaders != 0 {
			c.inBlock = 0
		}
	}
	return true
}

// bucket is a token bucket: rate tokens a second, up to ten seconds' worth.
type bucket struct {
	rate, tokens, burst float64
	last                time.Time
}

func (b *bucket) init(perSecond int) {
	b.rate = float64(perSecond)
	b.burst = 10 * b.rate
	b.tokens = b.burst
}

func (b *bucket) take() bool {
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
