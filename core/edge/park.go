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
// must be set to ParkConnState.
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
	perIP  map[string]int
	open   int

	nParked atomic.Int64
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
		perIP:    map[string]int{},
	}
	go p.acceptLoop()
	go p.trim()
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
	p.mu.Unlock()
	if status != 0 {
		refuse(c, status)
		return nil
	}
	pc := &parkConn{Conn: c, p: p, ip: ip}
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
	c.p.mu.Unlock()
	c.p.nParked.Add(-1)
	if n == 0 {
		c.closeNow()
		return
	}
	c.hasFirst = true
	// The server sets its own deadlines on the connection it accepts.
	_ = c.Conn.SetReadDeadline(time.Time{})
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
