package proxy

import (
	"net"
	"time"
)

// upConn is a pooled upstream connection that remembers the deadline armed on it, so the next
// request on the connection can often keep it instead of arming its own: arming a deadline
// costs two runtime timer updates and a clock read (about 90 ns), and a busy pooled connection
// carries thousands of requests a second, each wanting "now + timeout".
//
// Only the goroutine holding the connection (the pool hands it to one request at a time) uses
// armed; whoever sets a read or write deadline alone makes it unknown.
type upConn struct {
	net.Conn
	armed time.Time // the read and write deadline both, when known
	known bool
}

// NetConn is the dialed connection, for the unsolicited-bytes peek and a tunnel's half-close.
func (c *upConn) NetConn() net.Conn { return c.Conn }

func (c *upConn) SetDeadline(t time.Time) error {
	c.known = false
	if err := c.Conn.SetDeadline(t); err != nil {
		return err
	}
	c.armed, c.known = t, true
	return nil
}

func (c *upConn) SetReadDeadline(t time.Time) error {
	c.known = false
	return c.Conn.SetReadDeadline(t)
}

func (c *upConn) SetWriteDeadline(t time.Time) error {
	c.known = false
	return c.Conn.SetWriteDeadline(t)
}

// bound makes reads and writes on conn fail from no sooner than deadline, and no later than
// slack after it: a deadline already armed in that window is kept; otherwise deadline+slack is
// armed, so that requests following within slack keep it too. slack is a small share of the
// wait (deadlineSlack): a 30 s timeout may end up to 250 ms late, never early.
func bound(conn net.Conn, deadline time.Time, slack time.Duration) error {
	c, ok := conn.(*upConn)
	if !ok {
		return conn.SetDeadline(deadline)
	}
	if c.known && !c.armed.Before(deadline) && c.armed.Sub(deadline) <= slack {
		return nil
	}
	return c.SetDeadline(deadline.Add(slack))
}

// deadlineSlack is how late an upstream deadline due in wait may fire: an eighth of the wait,
// at most 250 ms.
func deadlineSlack(wait time.Duration) time.Duration {
	return min(wait/8, 250*time.Millisecond)
}
