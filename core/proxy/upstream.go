package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// Defaults applied to zero Options fields. They favour failing fast under overload over piling
// requests up: an edge proxy that queues without bound turns a slow upstream into an outage.
const (
	DefaultConnectTimeout         = 5 * time.Second
	DefaultTimeout                = 60 * time.Second
	DefaultIdleTimeout            = 10 * time.Second
	DefaultMaxConnWait            = time.Second
	DefaultMaxConns               = 512
	DefaultMaxResponseHeaderBytes = 16 << 10
)

// smallBody is the largest upstream body of known length that is read whole before the response
// is handed back: it spares small responses the streaming machinery, frees the upstream
// connection before the client has read anything, and lets response filters see the body.
const smallBody = 64 << 10

// Options configures an Upstream. Zero durations and sizes take the defaults above.
type Options struct {
	// Name identifies the upstream in errors and logs.
	Name string
	// Targets are "host:port" addresses, used round-robin.
	Targets []string
	// ConnectTimeout bounds establishing one TCP connection.
	ConnectTimeout time.Duration
	// Timeout bounds the whole exchange with the upstream, from sending the request to the last
	// byte of the response body, like Envoy's route timeout. Large transfers need a larger value.
	Timeout time.Duration
	// IdleTimeout closes pooled keep-alive connections unused for this long. Keep it below the
	// upstream's own keep-alive timeout so the gateway never reuses a connection being closed.
	IdleTimeout time.Duration
	// MaxConnWait is how long a request waits for a free connection when MaxConns are busy.
	// A negative value means do not wait.
	MaxConnWait time.Duration
	// MaxConns bounds the connections to each target.
	MaxConns int
	// Via, when set, adds "Via: 1.1 <Via>" to the forwarded request and to the response.
	Via string
	// MaxResponseHeaderBytes bounds the upstream response header section.
	MaxResponseHeaderBytes int
}

// Upstream forwards requests to a set of targets over pooled keep-alive connections.
// It is safe for concurrent use and is closed explicitly when its last snapshot retires.
type Upstream struct {
	name      string
	targets   []string
	pools     []*fasthttp.HostClient
	timeout   time.Duration
	maxHeader int
	via       string
	next      atomic.Uint64
	closed    atomic.Bool
}

// dialError marks a failure to connect, which is safe to retry on another target because no
// byte of the request has been sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// NewUpstream validates o and builds one connection pool per target.
func NewUpstream(o Options) (*Upstream, error) {
	if len(o.Targets) == 0 {
		return nil, fmt.Errorf("upstream %q: no targets", o.Name)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connect timeout", o.ConnectTimeout}, {"timeout", o.Timeout}, {"idle timeout", o.IdleTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("upstream %q: negative %s %v", o.Name, d.name, d.v)
		}
	}
	if o.MaxConns < 0 || o.MaxResponseHeaderBytes < 0 {
		return nil, fmt.Errorf("upstream %q: negative size limit", o.Name)
	}
	if o.Via != "" && !validToken(o.Via) {
		return nil, fmt.Errorf("upstream %q: via %q is not a token", o.Name, o.Via)
	}
	def := func(v, d time.Duration) time.Duration {
		if v == 0 {
			return d
		}
		return v
	}
	u := &Upstream{
		name:      o.Name,
		targets:   append([]string(nil), o.Targets...),
		timeout:   def(o.Timeout, DefaultTimeout),
		maxHeader: o.MaxResponseHeaderBytes,
	}
	if u.maxHeader == 0 {
		u.maxHeader = DefaultMaxResponseHeaderBytes
	}
	if o.Via != "" {
		u.via = "1.1 " + o.Via
	}
	maxConns := o.MaxConns
	if maxConns == 0 {
		maxConns = DefaultMaxConns
	}
	wait := def(o.MaxConnWait, DefaultMaxConnWait)
	if wait < 0 {
		wait = 0
	}
	dialer := &net.Dialer{Timeout: def(o.ConnectTimeout, DefaultConnectTimeout)}
	for _, t := range u.targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: target %q: %w", o.Name, t, err)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || host == "" {
			return nil, fmt.Errorf("upstream %q: target %q: want host:port", o.Name, t)
		}
		u.pools = append(u.pools, &fasthttp.HostClient{
			Addr: t,
			Name: o.Name,
			Dial: func(addr string) (net.Conn, error) {
				c, err := dialer.Dial("tcp", addr)
				if err != nil {
					return nil, &dialError{err: err}
				}
				return c, nil
			},
			MaxConns:                      maxConns,
			MaxIdleConnDuration:           def(o.IdleTimeout, DefaultIdleTimeout),
			MaxConnWaitTimeout:            wait,
			ReadBufferSize:                u.maxHeader,
			WriteBufferSize:               16 << 10,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			StreamResponseBody:            true,
		})
	}
	return u, nil
}

// Targets returns the target addresses in round-robin order.
func (u *Upstream) Targets() []string { return append([]string(nil), u.targets...) }

// Close closes idle pooled connections; connections still in use are closed when released.
func (u *Upstream) Close() error {
	u.closed.Store(true)
	for _, p := range u.pools {
		p.CloseIdleConnections()
	}
	return nil
}

var (
	errUpstreamClosed   = errors.New("upstream closed")
	errMalformedFraming = errors.New("malformed upstream response framing")
	errClientBody       = errors.New("read request body from client")
)

// Forward sends c.Request to the next target and writes the response into c.Response, or
// replies with a JSON error through c.Fail:
//
//	502: connection refused, no route, connect timeout, reset, malformed response
//	503: no free connection within MaxConnWait on any target, upstream closed
//	504: no complete response within Timeout
//	400: the client's own body was malformed or cut short (the connection is closed)
//
// Bodies stream in both directions; a response of known length up to 64 KiB is read whole.
// When the upstream fails after part of a streamed response was sent, the client connection is
// closed, which is the only way left to tell it the response is incomplete.
func (u *Upstream) Forward(c *filter.Ctx) {
	if u.closed.Load() {
		c.Fail(fasthttp.StatusServiceUnavailable, fmt.Errorf("upstream %q: %w", u.name, errUpstreamClosed))
		return
	}
	u.prepareRequest(&c.Request)

	var rb *clientBody
	if c.Request.IsBodyStream() {
		// Wrap the client body so a failure reading it is told apart from a failure writing it.
		rb = &clientBody{r: c.Request.BodyStream()}
		c.Request.SetBodyStream(rb, c.Request.Header.ContentLength())
	}
	deadline := time.Now().Add(u.timeout)
	n := uint64(len(u.pools))
	start := u.next.Add(1) - 1
	var err error
	for i := uint64(0); i < n; i++ {
		idx := (start + i) % n
		c.Upstream = u.targets[idx]
		err = u.exchange(c, u.pools[idx], deadline, rb)
		if err == nil {
			return
		}
		// Only failures before any byte was sent may move on to the next target.
		var de *dialError
		if !errors.As(err, &de) && !errors.Is(err, fasthttp.ErrNoFreeConns) {
			break
		}
	}
	u.fail(c, err, rb)
}

func (u *Upstream) prepareRequest(req *fasthttp.Request) {
	h := &req.Header
	// The upstream connection's lifetime is the gateway's business, and the request is always
	// sent as HTTP/1.1 whatever the client spoke.
	h.ResetConnectionClose()
	if !h.IsHTTP11() {
		h.SetProtocol("HTTP/1.1")
	}
	// The server already answered "100 Continue" to the client before the body was read;
	// forwarding the expectation would only make the upstream wait for nothing.
	if len(h.Peek(hExpect)) > 0 {
		h.Del(hExpect)
	}
	// Send exactly the path the client or the filters set: normalizing here would let the
	// upstream see a different resource than the one the route and filters matched on.
	req.URI().DisablePathNormalizing = true
	if u.via != "" {
		h.Add(hVia, u.via)
	}
}

func (u *Upstream) fail(c *filter.Ctx, err error, rb *clientBody) {
	status := fasthttp.StatusBadGateway
	var de *dialError
	var ne net.Error
	switch {
	case rb != nil && rb.err != nil:
		status = fasthttp.StatusBadRequest
		err = fmt.Errorf("%w: %w", errClientBody, rb.err)
		c.Response.SetConnectionClose()
	case errors.Is(err, errUpstreamClosed), errors.Is(err, fasthttp.ErrNoFreeConns):
		status = fasthttp.StatusServiceUnavailable
	case errors.As(err, &de):
		status = fasthttp.StatusBadGateway
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		status = fasthttp.StatusGatewayTimeout
	}
	c.Fail(status, fmt.Errorf("upstream %q target %s: %w", u.name, c.Upstream, err))
}

// exchange runs one request/response over a pooled connection of hc. It returns nil once
// c.Response holds the upstream response (its body possibly still streaming).
func (u *Upstream) exchange(c *filter.Ctx, hc *fasthttp.HostClient, deadline time.Time, rb *clientBody) error {
	req := &c.Request
	// A request without a body may be resent once when a pooled connection turns out to have
	// been closed by the upstream while idle; nothing else is ever resent.
	retryStale := rb == nil && (req.Header.IsGet() || req.Header.IsHead() || req.Header.IsOptions())
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return fasthttp.ErrTimeout
		}
		cc, err := hc.AcquireConn(wait, false)
		if err != nil {
			return err
		}
		// A connection fresh from the dialer has never been released, so it has no last use.
		reused := !cc.LastUseTime().IsZero()
		conn := cc.Conn()
		if err = conn.SetDeadline(deadline); err != nil {
			hc.CloseConn(cc)
			return err
		}
		bw := hc.AcquireWriter(conn)
		err = req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		hc.ReleaseWriter(bw)
		if err != nil {
			hc.CloseConn(cc)
			if retryStale && reused && isStale(err) {
				retryStale = false
				continue
			}
			return fmt.Errorf("send request: %w", err)
		}

		br := hc.AcquireReader(conn)
		resp := fasthttp.AcquireResponse()
		resp.Header.DisableNormalizing()
		if req.Header.IsHead() {
			resp.SkipBody = true
		}
		err = u.readHeader(br, resp)
		if err != nil {
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			fasthttp.ReleaseResponse(resp)
			if retryStale && reused && isStale(err) {
				retryStale = false
				continue
			}
			return err
		}
		reusable := !resp.ConnectionClose()
		cl := resp.Header.ContentLength()
		skip := resp.SkipBody || noBodyStatus(resp.StatusCode())
		if skip || (cl >= 0 && cl <= smallBody) {
			if !skip {
				if err = resp.ReadBody(br, 0); err != nil {
					hc.ReleaseReader(br)
					hc.CloseConn(cc)
					fasthttp.ReleaseResponse(resp)
					return fmt.Errorf("read response body: %w", err)
				}
			}
			hc.ReleaseReader(br)
			if reusable && !u.closed.Load() {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
			u.copyResponse(c, resp)
			if !skip {
				c.Response.SetBody(resp.Body())
			}
			fasthttp.ReleaseResponse(resp)
			return nil
		}

		resp.StreamBody = true
		if err = resp.ReadBody(br, 0); err != nil {
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			fasthttp.ReleaseResponse(resp)
			return fmt.Errorf("read response body: %w", err)
		}
		u.copyResponse(c, resp)
		s := &respStream{resp: resp, src: resp.BodyStream(), br: br, hc: hc}
		s.release = func(reuse bool) {
			if reuse && reusable && !u.closed.Load() {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
		}
		c.Response.SetBodyStream(s, cl)
		return nil
	}
}

// readHeader reads the response header section after checking its raw bytes with the same rules
// as CheckFraming. Interim 1xx responses are checked and skipped.
func (u *Upstream) readHeader(br *bufio.Reader, resp *fasthttp.Response) error {
	for {
		raw, err := peekHeaderSection(br)
		if err != nil {
			return err
		}
		// Skip the status line; the parser below validates it.
		i := bytes.IndexByte(raw, '\n')
		if err = checkRaw(raw[i+1:], true); err != nil {
			return fmt.Errorf("%w: %w", errMalformedFraming, err)
		}
		if err = resp.Header.Read(br); err != nil {
			return fmt.Errorf("read response header: %w", err)
		}
		sc := resp.StatusCode()
		if sc >= 200 || sc == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
}

var errHeaderTooLarge = errors.New("response header section too large")

// peekHeaderSection returns the buffered bytes of the next header section, up to and including
// its empty line, reading more from the connection as needed.
func peekHeaderSection(br *bufio.Reader) ([]byte, error) {
	n := 1
	for {
		b, err := br.Peek(n)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errHeaderTooLarge
			}
			if len(b) == 0 || errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, fmt.Errorf("read response header: %w", err)
		}
		b, _ = br.Peek(br.Buffered())
		if end := bytes.Index(b, crlfcrlf); end >= 0 {
			return b[:end+4], nil
		}
		if bytes.Contains(b, lflf) {
			return nil, fmt.Errorf("%w: %w", errMalformedFraming, ErrBadLineEnding)
		}
		n = len(b) + 1
	}
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// copyResponse moves the upstream status and header into c.Response, stripping hop-by-hop
// fields. Framing fields are dropped and re-derived by the server from the body it is given.
func (u *Upstream) copyResponse(c *filter.Ctx, resp *fasthttp.Response) {
	h := &c.Response.Header
	resp.Header.CopyTo(h)
	if conn := resp.Header.Peek(hConnection); len(conn) > 0 {
		for len(conn) > 0 {
			var tok []byte
			if i := indexByte(conn, ','); i >= 0 {
				tok, conn = conn[:i], conn[i+1:]
			} else {
				tok, conn = conn, nil
			}
			tok = trimOWS(tok)
			if len(tok) > 0 && !protectedFromConnection(tok) {
				h.DelBytes(tok)
			}
		}
	}
	h.ResetConnectionClose()
	for _, hn := range hopNames {
		if hn.bit == bTransferEncoding || len(h.Peek(hn.name)) > 0 {
			h.Del(hn.name)
		}
	}
	if u.via != "" {
		h.Add(hVia, u.via)
	}
}

func noBodyStatus(sc int) bool {
	return sc < 200 || sc == fasthttp.StatusNoContent || sc == fasthttp.StatusNotModified
}

// isStale reports an error meaning the upstream closed a pooled connection before answering.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// clientBody wraps the client's request body stream to remember why reading it failed.
type clientBody struct {
	r   io.Reader
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// respStream is the body of a streamed upstream response as handed to the server. The server
// closes it once the body was written or the client went away; Close then returns the upstream
// connection to its pool when the body was read to the end, and closes it otherwise.
type respStream struct {
	resp    *fasthttp.Response
	src     io.Reader
	br      *bufio.Reader
	hc      *fasthttp.HostClient
	release func(reuse bool)
	eof     bool
	err     error
	closed  bool
}

func (s *respStream) Read(p []byte) (int, error) {
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	n, err := s.src.Read(p)
	switch {
	case err == io.EOF:
		s.eof = true
	case err != nil:
		s.err = err
	}
	return n, err
}

func (s *respStream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	_ = s.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(s.resp)
	s.hc.ReleaseReader(s.br)
	s.release(s.eof && s.err == nil)
	s.resp, s.src, s.br = nil, nil, nil
	return nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] && s[i] != '.' {
			return false
		}
	}
	return s != ""
}
