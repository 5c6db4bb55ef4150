package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// errBadUpgrade: the upstream answered 101 without completing the WebSocket handshake. It may
// not speak WebSocket at all, and taking its 101 for a tunnel would let the next bytes the
// client sends reach it as raw requests no filter saw.
var errBadUpgrade = errors.New("upstream answered 101 without a valid websocket handshake")

// WebSocket forwards c's request, a WebSocket opening handshake the edge checked
// (edge.CheckUpgrade), to a target the balancer picks, over a connection of its own, and
// reads the answer into c.Response. When the upstream completes the handshake (101 with the
// Sec-WebSocket-Accept that answers the client's key), it returns that connection for the
// caller to splice with the client's (Tunnel); bytes the upstream sent after its 101 are
// read from it first. Otherwise it returns nil and c.Response holds an ordinary answer: the
// upstream's non-101 answer (its body read whole, up to 64 KiB), or a gateway error through
// c.Fail (502 unreachable or a 101 without a valid handshake, 503 no target, 504 no answer
// within the timeout). A failure to connect is retried on another target as Forward does;
// nothing else is, since the upstream may have acted on the handshake.
//
// The tunnel's connection is not one of the pool's (it never returns to it, and does not
// count in max_conns): the gateway's own cap on tunnels bounds them.
func (u *Upstream) WebSocket(c *filter.Ctx) net.Conn { return u.websocket(c, &u.def) }

// WebSocket is Upstream.WebSocket under the route's timeouts and retries.
func (r *RouteUpstream) WebSocket(c *filter.Ctx) net.Conn { return r.u.websocket(c, &r.p) }

func (u *Upstream) websocket(c *filter.Ctx, p *policy) net.Conn {
	if u.closed.Load() {
		c.Fail(fasthttp.StatusServiceUnavailable, fmt.Errorf("upstream %q: %w", u.name, errUpstreamClosed))
		return nil
	}
	v := u.cur.Load()
	accept := httpsyntax.WebSocketAccept(c.Request.Header.Peek("Sec-WebSocket-Key"))
	if err := u.prepareRequest(&c.Request); err != nil {
		c.Fail(fasthttp.StatusBadGateway, fmt.Errorf("upstream %q: %w", u.name, err))
		return nil
	}
	// The edge removed the hop-by-hop fields; the upgrade is asked for again, hop to hop.
	h := &c.Request.Header
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	u.pool.budget.request(time.Now().Unix())
	key := u.hashKey(c)
	exclude := -1
	var err error
	for attempt := 0; ; attempt++ {
		i := v.pick(key, exclude)
		if i < 0 {
			if err == nil {
				err = errNoTarget
			}
			break
		}
		var conn net.Conn
		if conn, err = u.handshake(c, v.members[i], p, accept); err == nil {
			return conn
		}
		var de *dialError
		if !errors.As(err, &de) || attempt >= p.retry.Attempts ||
			!u.pool.budget.withdraw(time.Now().Unix(), p.retry.BudgetRatio, p.retry.MinRetriesPerSecond) {
			break
		}
		if len(v.members) > 1 {
			exclude = i
		}
	}
	u.fail(c, err, nil)
	return nil
}

// handshake dials m, sends the handshake and reads the answer. nil error with a nil
// connection means c.Response holds the upstream's non-101 answer.
func (u *Upstream) handshake(c *filter.Ctx, m *member, p *policy, accept string) (net.Conn, error) {
	c.Upstream = m.addr
	start := m.target.Begin()
	conn, err := m.hc.Dial(m.addr)
	if err != nil {
		u.observe(m, start, err, false)
		return nil, err
	}
	if uc, ok := conn.(*upConn); ok {
		// A tunnel sets deadlines from two goroutines at once; upConn remembers the deadline of
		// a pooled connection, which one request holds at a time.
		conn = uc.Conn
	}
	deadline := time.Now().Add(p.timeout)
	if p.request > 0 && p.request < p.timeout {
		deadline = time.Now().Add(p.request)
	}
	tunnel, err := u.exchangeUpgrade(c, conn, deadline, accept)
	if tunnel == nil {
		_ = conn.Close()
	}
	u.observe(m, start, err, err == nil && c.Response.StatusCode() >= 500)
	return tunnel, err
}

// observe records an attempt's outcome for balancing and outlier detection, as attempt does.
func (u *Upstream) observe(m *member, start time.Time, err error, is5xx bool) {
	oc := outcomeOK
	switch {
	case err != nil:
		oc = classify(err)
	case is5xx:
		oc = outcome5xx
	}
	m.target.End(start, oc != outcomeOK)
	u.pool.observe(m, oc, &u.outlier)
}

func (u *Upstream) exchangeUpgrade(c *filter.Ctx, conn net.Conn, deadline time.Time, accept string) (net.Conn, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(conn, 4<<10)
	if err := c.Request.Write(bw); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReaderSize(conn, maxResponseHeader)
	out := &c.Response
	out.Header.DisableNormalizing()
	if err := u.readHeader(br, out); err != nil {
		out.Reset()
		return nil, err
	}
	if out.StatusCode() != fasthttp.StatusSwitchingProtocols {
		// Relayed as an ordinary answer; the connection is closed after it, since the upstream
		// may take the next bytes as part of a tunnel.
		if !noBodyStatus(out.StatusCode()) {
			if err := out.ReadBody(br, smallBody); err != nil {
				out.Reset()
				return nil, fmt.Errorf("read response body: %w", err)
			}
		}
		u.stripResponse(&out.Header)
		return nil, nil
	}
	oh := &out.Header
	if !httpsyntax.HasElement(peekFold(oh, "Upgrade"), "websocket") || !httpsyntax.HasElement(peekFold(oh, "Connection"), "upgrade") ||
		string(peekFold(oh, "Sec-WebSocket-Accept")) != accept {
		out.Reset()
		return nil, errBadUpgrade
	}
	// The upgrade fields are the gateway's to send, once, whatever spelling the upstream used.
	delFold(oh, "Upgrade")
	delFold(oh, "Connection")
	u.stripResponse(oh)
	oh.Set("Upgrade", "websocket")
	oh.Set("Connection", "Upgrade")
	if err := conn.SetDeadline(time.Time{}); err != nil {
		out.Reset()
		return nil, err
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn is a connection whose first bytes were already read into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// NetConn is the connection under the buffer, for a half-close.
func (c *bufferedConn) NetConn() net.Conn { return c.Conn }

// peekFold returns the first value of the field name in any case: upstream headers are read
// without name normalisation, so Peek matches only the spelling it is given.
func peekFold(h *fasthttp.ResponseHeader, name string) []byte {
	for k, v := range h.All() {
		if httpsyntax.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// delFold removes every field name in any case (see peekFold).
func delFold[T ~string | ~[]byte](h *fasthttp.ResponseHeader, name T) {
	for {
		// A copy of the name as stored (deleting moves the record it points into); on the stack
		// for any name up to 64 bytes.
		var buf [64]byte
		var key []byte
		for k := range h.All() {
			if httpsyntax.EqualFold(k, name) {
				key = append(buf[:0], k...)
				break
			}
		}
		if key == nil {
			return
		}
		h.DelBytes(key)
	}
}
