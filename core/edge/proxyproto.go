package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyOptions configure ProxyProtocol.
type ProxyOptions struct {
	// V1 and V2 are the header versions accepted; at least one must be set.
	V1, V2 bool
	// From are the peers allowed to send a header (the load balancers). A connection from
	// any other peer is closed unread: whoever sends the header chooses the client address.
	From []netip.Prefix
	// Timeout bounds the wait for a whole header.
	Timeout time.Duration
	// MaxPending caps the connections whose header is still being read; further ones are
	// closed at once. 0 means no cap.
	MaxPending int
	// OnRefused, when set, is told of every connection closed for its header or its peer.
	OnRefused func(peer net.Addr, err error)
}

// Reasons a connection is refused by a ProxyProtocol listener.
var (
	ErrProxyPeer    = errors.New("proxy protocol: peer is not in proxy_protocol_from")
	ErrProxyVersion = errors.New("proxy protocol: header version not accepted on this listener")
	ErrProxyBusy    = errors.New("proxy protocol: too many connections waiting for their header")
)

// ProxyProtocol wraps a listener whose every connection starts with a PROXY protocol header
// (v1 text or v2 binary, as sent by HAProxy, AWS NLB, GCP and most L4 balancers). Accept
// returns only connections whose header was read and accepted; their RemoteAddr and
// LocalAddr are the client's and the balancer's addresses from the header (a LOCAL v2
// header, a balancer's own health check, keeps the connection's). So the client address
// reaches trusted_proxies and X-Forwarded-For exactly as a direct peer's would.
//
// A connection without a valid header (none, malformed, truncated, the wrong version, or not
// whole within Timeout) is closed unread, as is one from a peer outside From. Headers are
// read on a goroutine per connection, never in Accept: a server's accept loop (fasthttp's
// asks each connection for its RemoteAddr) is never held by a slow sender.
func ProxyProtocol(ln net.Listener, o ProxyOptions) net.Listener {
	l := &proxyListener{
		Listener: ln, o: o,
		ready:   make(chan net.Conn),
		errc:    make(chan error),
		done:    make(chan struct{}),
		pending: map[net.Conn]struct{}{},
	}
	go l.acceptLoop()
	return l
}

type proxyListener struct {
	net.Listener
	o ProxyOptions

	ready chan net.Conn // connections whose header was accepted
	errc  chan error    // errors of the underlying Accept
	done  chan struct{} // closed by Close
	once  sync.Once

	// Connections whose header is being read, so Close can end their reads at once. Taken
	// once per connection, never per request.
	mu      sync.Mutex
	pending map[net.Conn]struct{}
}

func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *proxyListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

func (l *proxyListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errc <- err:
			case <-l.done:
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // the server retries these (file descriptors exhausted, …)
			}
			return
		}
		if !l.allowed(c.RemoteAddr()) {
			l.refuse(c, ErrProxyPeer)
			continue
		}
		if !l.track(c) {
			l.refuse(c, ErrProxyBusy)
			continue
		}
		go l.handshake(c)
	}
}

// track records c as pending; false when MaxPending are already, or after Close.
func (l *proxyListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return false
	default:
	}
	if l.o.MaxPending > 0 && len(l.pending) >= l.o.MaxPending {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *proxyListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

func (l *proxyListener) allowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.o.From {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (l *proxyListener) refuse(c net.Conn, err error) {
	if l.o.OnRefused != nil {
		l.o.OnRefused(c.RemoteAddr(), err)
	}
	_ = c.Close()
}

// handshake reads c's header and hands the connection to Accept, or closes it.
func (l *proxyListener) handshake(c net.Conn) {
	pc := proxyproto.NewConn(c,
		proxyproto.WithPolicy(proxyproto.REQUIRE),
		proxyproto.SetReadHeaderTimeout(l.o.Timeout),
		proxyproto.ValidateHeader(l.version))
	// A read of nothing processes the header and reports its error, if any; it consumes none
	// of what follows the header.
	_, err := pc.Read(nil)
	l.untrack(c)
	if err != nil {
		l.refuse(c, fmt.Errorf("proxy protocol header: %w", err))
		return
	}
	select {
	case l.ready <- pc:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *proxyListener) version(h *proxyproto.Header) error {
	if (h.Version == 1 && !l.o.V1) || (h.Version == 2 && !l.o.V2) {
		return fmt.Errorf("%w (v%d)", ErrProxyVersion, h.Version)
	}
	return nil
}
