package edge

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Parking makes an idle keep-alive connection cheap. fasthttp serves a connection on one
// goroutine for its whole life and, when request bodies are streamed, keeps its read buffer
// (server.max_header_bytes, 16 KiB by default) while the connection waits for the next
// request: about 20 KiB per idle connection, 20 GB for a million idle mobile clients.
//
// A Parker sits between the listener and the fasthttp server, which it tells to give up on a
// keep-alive connection after a short idle time (ParkOptions.After, the server's
// IdleTimeout). When the server then closes the connection, the Parker keeps it open instead,
// on a fresh goroutine that waits for one byte without a buffer; the server's goroutine, read
// buffer and request context go back to their pools. When the byte arrives, the connection is
// handed back to the server through Accept, the byte first, like a new connection. It stays
// parked at most until the full idle timeout (ParkOptions.Idle) from the moment it went idle,
// and is closed with the listener.
//
// Only a connection the server closed while it was idle (fasthttp's StateIdle: the last
// response written, the request's body drained, nothing of a next request read) is parked;
// every other close is a close. fasthttp reports the states through Server.ConnState, which
// must be set to ParkConnState, or to ConnState where GuardTLS wraps the Parker.
//
// The server no longer sees parked connections, so its own connection limits would not count
// them: the Parker applies server.max_conns and server.max_conns_per_ip itself, to every open
// connection, served or parked, and the server must not apply MaxConnsPerIP itself (it would
// count a woken connection twice).
type Parker struct {
	net.Listener
	o ParkOptions

	accepted chan acceptResult
	woken    chan net.Conn
	done     chan struct{}
	close    sync.Once

	mu     sync.Mutex
	parked map[*parkConn]struct{}
	served map[*parkConn]struct{} // open and not parked; swept when deadlines are coarse
	perIP  map[string]int
	open   int

	nParked atomic.Int64

	// Coarse deadlines (ParkOptions.Resolution): times are nanoseconds on the monotonic clock
	// since epoch; now is the sweeper's last reading.
	epoch time.Time
	now   atomic.Int64
}

// ParkOptions configures a Parker.
type ParkOptions struct {
	// After is how long a keep-alive connection waits in the server before it is parked; the
	// server's IdleTimeout must be set to it.
	After time.Duration
	// Idle is the idle timeout: a connection idle this long, in the server and parked
	// together, is closed; 0 is none. It must be 0 or more than After.
	Idle time.Duration
	// MaxConns and MaxConnsPerIP bound open connections, parked or not (0: no bound).
	MaxConns, MaxConnsPerIP int
	// Resolution, when set, makes the read and write deadlines the server sets on the
	// connections it serves coarse: recorded, and enforced by a sweep every Resolution, so a
	// deadline fires up to Resolution late (never early). See coarse deadlines below.
	Resolution time.Duration
}

type acceptResult struct {
	c   net.Conn
	err error
}

// Park wraps ln; Close closes ln and every parked connection.
func Park(ln net.Listener, o ParkOptions) *Parker {
	p := &Parker{
		Listener: ln, o: o,
		accepted: make(chan acceptResult),
		woken:    make(chan net.Conn),
		done:     make(chan struct{}),
		parked:   map[*parkConn]struct{}{},
		served:   map[*parkConn]struct{}{},
		perIP:    map[string]int{},
		epoch:    time.Now(),
	}
	go p.acceptLoop()
	go p.trim()
	if o.Resolution > 0 {
		go p.sweep()
	}
	return p
}

// trimEvery and trimStep pace trim.
const (
	trimEvery = 10 * time.Second
	trimStep  = 1024
)

// trim returns the memory parked connections gave back to the operating system once many more
// are parked than at the last trim. Go reuses freed memory for new work at once, but an idle
// process only collects every 2 minutes and returns memory slowly, so without this the
// resident size of a gateway holding many idle clients stays where their busiest moment left
// it. It costs one garbage collection per trimEvery at most, and only after trimStep or more
// connections went idle, and once more 30 s later.
func (p *Parker) trim() {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	last, follow := int64(0), 0
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		switch n := p.nParked.Load(); {
		case n >= last+trimStep:
			debug.FreeOSMemory()
			// Once more when the server's worker goroutines, idle since their connections
			// parked, have exited (fasthttp stops a worker idle for 10 s) and freed their
			// stacks.
			last, follow = n, 3
		case n < last:
			last = n
		}
		if follow > 0 {
			if follow--; follow == 0 {
				debug.FreeOSMemory()
			}
		}
	}
}

// Parked reports how many connections are parked now.
func (p *Parker) Parked() int64 { return p.nParked.Load() }

func (p *Parker) acceptLoop() {
	for {
		c, err := p.Listener.Accept()
		select {
		case p.accepted <- acceptResult{c, err}:
		case <-p.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next new connection or woken parked one.
func (p *Parker) Accept() (net.Conn, error) {
	for {
		select {
		case c := <-p.woken:
			return c, nil
		case r := <-p.accepted:
			if r.err != nil {
				return nil, r.err
			}
			if c := p.admit(r.c); c != nil {
				return c, nil
			}
		case <-p.done:
			return nil, net.ErrClosed
		}
	}
}

// admit counts a new connection against the limits and wraps it, or refuses it with the
// answer fasthttp gives when its own limits refuse one, and returns nil.
func (p *Parker) admit(c net.Conn) net.Conn {
	ip := remoteIP(c)
	p.mu.Lock()
	status := 0
	switch {
	case p.o.MaxConns > 0 && p.open >= p.o.MaxConns:
		status = fasthttp.StatusServiceUnavailable
	case p.o.MaxConnsPerIP > 0 && p.perIP[ip] >= p.o.MaxConnsPerIP:
		status = fasthttp.StatusTooManyRequests
	default:
		p.open++
		p.perIP[ip]++
	}
	pc := &parkConn{Conn: c, p: p, ip: ip}
	if status == 0 {
		p.served[pc] = struct{}{}
	}
	p.mu.Unlock()
	if status != 0 {
		refuse(c, status)
		return nil
	}
	pc.served = pc
	if tc, ok := c.(*tls.Conn); ok {
		// fasthttp and the engine read a connection's TLS state through these methods.
		pc.served = &parkTLSConn{parkConn: pc, tls: tc}
	}
	return pc.served
}

// refuse answers a connection over a limit and closes it, without waiting for its request.
func refuse(c net.Conn, status int) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	body := `{"error":"` + fasthttp.StatusMessage(status) + `: too many connections"}`
	_, _ = c.Write([]byte("HTTP/1.1 " + strconv.Itoa(status) + " " + fasthttp.StatusMessage(status) +
		"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	c.Close()
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return string(a.IP)
	}
	return c.RemoteAddr().String()
}

// Close closes the listener and every parked connection; connections the server holds are
// the server's to close (fasthttp's Shutdown closes the listener first, then its connections,
// which are then closed, not parked).
func (p *Parker) Close() error {
	err := p.Listener.Close()
	p.close.Do(func() {
		close(p.done)
		p.mu.Lock()
		for c := range p.parked {
			c.Conn.Close() // its wait fails and forgets it
		}
		p.mu.Unlock()
	})
	return err
}

func (p *Parker) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ParkConnState is the fasthttp server's ConnState hook: it records which connections are
// idle. One server may serve several Parkers' listeners.
func ParkConnState(c net.Conn, st fasthttp.ConnState) {
	var pc *parkConn
	switch c := c.(type) {
	case *parkConn:
		pc = c
	case *parkTLSConn:
		pc = c.parkConn
	default:
		return
	}
	// Only the serving goroutine's own transitions count. StateClosed comes from the worker
	// that closed (parked) the connection, and may arrive after the connection was woken and
	// went idle again on another worker; it must not clear that.
	switch st {
	case fasthttp.StateIdle:
		pc.idle.Store(true)
	case fasthttp.StateActive:
		pc.idle.Store(false)
	}
}

// parkConn is a connection the Parker admitted.
type parkConn struct {
	net.Conn
	p  *Parker
	ip string
	// served is what the server is given, on admission and each wake: the parkConn itself, or
	// its TLS wrapper.
	served net.Conn

	idle atomic.Bool // fasthttp's last state for it was StateIdle

	// The coarse read and write deadlines (0: none, fired: the sweeper enforced it), and the
	// lock that orders the sweeper's firing with re-arming after it.
	rdl, wdl atomic.Int64
	dmu      sync.Mutex
	// One byte read while parked, returned by the next Read. Only the goroutine that owns the
	// connection touches it: the parking one until it hands the connection back, then the
	// server's.
	first    [1]byte
	hasFirst bool
	closed   bool // really closed; guarded by p.mu
}

// NetConn is the admitted connection, for CloseWrite (a WebSocket tunnel half-closes).
func (c *parkConn) NetConn() net.Conn { return c.Conn }

func (c *parkConn) Read(b []byte) (int, error) {
	if c.hasFirst && len(b) > 0 {
		c.hasFirst = false
		b[0] = c.first[0]
		return 1, nil
	}
	return c.Conn.Read(b)
}

// Close parks the connection when the server gives up on it while it is idle, and closes it
// otherwise.
func (c *parkConn) Close() error {
	if c.idle.Swap(false) && !c.p.closed() {
		c.p.mu.Lock()
		c.p.parked[c] = struct{}{}
		delete(c.p.served, c)
		c.p.mu.Unlock()
		c.p.nParked.Add(1)
		var deadline time.Time // none without an idle timeout
		if c.p.o.Idle > 0 {
			deadline = time.Now().Add(c.p.o.Idle - c.p.o.After)
		}
		// A fresh goroutine: the server's has a stack grown by serving requests.
		go c.wait(deadline)
		return nil
	}
	return c.closeNow()
}

func (c *parkConn) closeNow() error {
	c.p.mu.Lock()
	if c.closed {
		c.p.mu.Unlock()
		return nil
	}
	c.closed = true
	delete(c.p.served, c)
	c.p.open--
	if c.p.perIP[c.ip]--; c.p.perIP[c.ip] <= 0 {
		delete(c.p.perIP, c.ip)
	}
	c.p.mu.Unlock()
	return c.Conn.Close()
}

// wait holds a parked connection until its next request starts, its idle time runs out, or
// the listener closes.
func (c *parkConn) wait(deadline time.Time) {
	err := c.Conn.SetReadDeadline(deadline)
	n := 0
	if err == nil {
		n, err = c.Conn.Read(c.first[:])
	}
	c.p.mu.Lock()
	delete(c.p.parked, c)
	if n > 0 {
		c.p.served[c] = struct{}{}
	}
	c.p.mu.Unlock()
	c.p.nParked.Add(-1)
	if n == 0 {
		c.closeNow()
		return
	}
	c.hasFirst = true
	// The server sets its own deadlines on the connection it accepts. A coarse write deadline
	// the sweeper fired while the connection idled is cleared with the rest.
	c.rdl.Store(0)
	c.wdl.Store(0)
	_ = c.Conn.SetDeadline(time.Time{})
	select {
	case c.p.woken <- c.served:
	case <-c.p.done:
		c.closeNow()
	}
}

// parkTLSConn is a parkConn over TLS, with the methods fasthttp reads TLS state through.
type parkTLSConn struct {
	*parkConn
	tls *tls.Conn
}

func (c *parkTLSConn) Handshake() error                     { return c.tls.Handshake() }
func (c *parkTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// Coarse deadlines. fasthttp sets three deadlines per keep-alive request on the connection it
// serves (the idle wait, the request read, the response write), each a runtime timer update and
// a clock read, about 140 ns: a few percent of a small proxied request's CPU. With
// ParkOptions.Resolution set, a served connection only records them (an atomic store), and one
// sweep every Resolution fires those that have passed by setting a deadline in the past on the
// connection, which fails the read or write waiting on it exactly as a deadline timer would.
// A deadline therefore fires up to Resolution late and never early; a deadline already in the
// past when it is set (an interrupt) is applied at once. Parked connections keep real
// deadlines: they wait on their own goroutine, outside the server.
//
// The sweep holds p.mu while it walks the served connections: with tens of thousands served it
// takes well under a millisecond per Resolution.

// fired marks a coarse deadline the sweeper has enforced: the connection carries a deadline in
// the past until the next one is set.
const fired = -1

// longAgo is the deadline the sweeper sets to fail a pending read or write at once.
var longAgo = time.Unix(1, 0)

func (c *parkConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *parkConn) SetReadDeadline(t time.Time) error {
	if c.p.o.Resolution <= 0 {
		return c.Conn.SetReadDeadline(t)
	}
	return c.setCoarse(&c.rdl, t, true)
}

func (c *parkConn) SetWriteDeadline(t time.Time) error {
	if c.p.o.Resolution <= 0 {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.setCoarse(&c.wdl, t, false)
}

func (c *parkConn) setCoarse(d *atomic.Int64, t time.Time, read bool) error {
	v := int64(0) // none
	if !t.IsZero() {
		v = int64(t.Sub(c.p.epoch))
	}
	if !t.IsZero() && v <= c.p.now.Load() {
		// Already past: the caller wants the pending read or write to fail now.
		c.dmu.Lock()
		defer c.dmu.Unlock()
		d.Store(fired)
		return c.setReal(t, read)
	}
	if d.Swap(v) == fired {
		// The last deadline was fired, so the connection carries one in the past: lift it,
		// after the sweeper (which fires under dmu) has finished setting it.
		c.dmu.Lock()
		defer c.dmu.Unlock()
		return c.setReal(time.Time{}, read)
	}
	return nil
}

func (c *parkConn) setReal(t time.Time, read bool) error {
	if read {
		return c.Conn.SetReadDeadline(t)
	}
	return c.Conn.SetWriteDeadline(t)
}

// fire enforces c's coarse deadlines that are due at now.
func (c *parkConn) fire(now int64) {
	for _, read := range [2]bool{true, false} {
		d := &c.wdl
		if read {
			d = &c.rdl
		}
		if v := d.Load(); v > 0 && v <= now {
			c.dmu.Lock()
			if d.CompareAndSwap(v, fired) {
				_ = c.setReal(longAgo, read)
			}
			c.dmu.Unlock()
		}
	}
}

// sweep fires the served connections' coarse deadlines every Resolution. It outlives the
// listener until the last served connection is closed: a drain still needs their timeouts.
func (p *Parker) sweep() {
	t := time.NewTicker(p.o.Resolution)
	defer t.Stop()
	for range t.C {
		now := int64(time.Since(p.epoch))
		p.now.Store(now)
		p.mu.Lock()
		for c := range p.served {
			c.fire(now)
		}
		done := p.closed() && len(p.served) == 0
		p.mu.Unlock()
		if done {
			return
		}
	}
}
