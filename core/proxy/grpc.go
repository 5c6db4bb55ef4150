package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// gRPC status codes the gateway answers with (google.golang.org/grpc/codes, which Weir does
// not import outside tests).
const (
	GRPCOK                 = 0
	GRPCCancelled          = 1
	GRPCUnknown            = 2
	GRPCDeadlineExceeded   = 4
	GRPCPermissionDenied   = 7
	GRPCResourceExhausted  = 8
	GRPCUnimplemented      = 12
	GRPCInternal           = 13
	GRPCUnavailable        = 14
	GRPCUnauthenticated    = 16
	grpcContentType        = "application/grpc"
	grpcWebContentType     = "application/grpc-web"
	grpcWebTrailerFlag     = 0x80
	grpcMaxTimeoutDigits   = 8
	grpcUpstreamDrainLimit = 64 << 10
)

// GRPC forwards gRPC calls to the targets of an Upstream over HTTP/2 (h2c, or TLS when the
// upstream has tls), with the same target choice, balancing and health state as HTTP
// forwarding. A call on an HTTP/2 stream is answered on the stream itself, so messages flow
// both ways as they arrive and the upstream's trailers reach the client; a gRPC-Web call (over
// HTTP/1.1 or HTTP/2) goes upstream as gRPC and its trailers come back as the body's last
// frame.
type GRPC struct {
	u      *Upstream
	tr     *http2.Transport
	scheme string
}

// NewGRPC returns the gRPC terminal for u. Connections are x/net's: one HTTP/2 connection per
// target carries every call to it.
func NewGRPC(u *Upstream) *GRPC {
	t, scheme := u.pool.tr.h2Transport()
	return &GRPC{u: u, tr: t, scheme: scheme}
}

// h2Transport is an HTTP/2 client with the pool's connect timeout and TLS settings: TLS with
// ALPN h2 when the upstream has tls, else h2c with prior knowledge. It returns the URL scheme
// its requests take.
func (tr *transport) h2Transport() (*http2.Transport, string) {
	dialer := &net.Dialer{Timeout: tr.connectTimeout}
	t := &http2.Transport{
		ReadIdleTimeout: 30 * time.Second, // pings a silent connection, so a dead peer is noticed
		PingTimeout:     10 * time.Second,
		// Also closes, once their calls end, the connections of a terminal a reload retired
		// while calls were in flight (Close could only close the idle ones).
		IdleConnTimeout: tr.idleTimeout,
	}
	if tr.tls == nil {
		t.AllowHTTP = true
		t.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err: err}
			}
			return conn, nil
		}
		return t, "http"
	}
	cfg := tr.tls.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	t.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		c := cfg
		if c.ServerName == "" {
			c = cfg.Clone()
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		d := tls.Dialer{NetDialer: dialer, Config: c}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err: err}
		}
		return conn, nil
	}
	return t, "https"
}

// Close closes the transport's idle connections; calls in flight finish.
func (g *GRPC) Close() error {
	g.tr.CloseIdleConnections()
	return nil
}

// IsGRPC reports a gRPC (not gRPC-Web) content type.
func IsGRPC(ct []byte) bool {
	return hasTypePrefix(ct, grpcContentType) && !hasTypePrefix(ct, grpcWebContentType)
}

// isGRPCWeb reports a binary gRPC-Web content type (application/grpc-web, or with +proto,
// +json…). The base64 text variant (application/grpc-web-text) is not translated.
func isGRPCWeb(ct []byte) bool {
	return hasTypePrefix(ct, grpcWebContentType) && !hasTypePrefix(ct, grpcWebContentType+"-text")
}

// hasTypePrefix reports ct is typ, or typ followed by "+…" or ";…", in any case.
func hasTypePrefix(ct []byte, typ string) bool {
	if len(ct) < len(typ) || !httpsyntax.EqualFold(ct[:len(typ)], []byte(typ)) {
		return false
	}
	return len(ct) == len(typ) || ct[len(typ)] == '+' || ct[len(typ)] == ';'
}

var (
	errGRPCOverHTTP1 = errors.New("gRPC needs HTTP/2 (h2c prior knowledge or TLS with ALPN h2); over HTTP/1.1 only gRPC-Web is served")
	errGRPCType      = errors.New("a gRPC route takes application/grpc or application/grpc-web content")
	errGRPCTimeout   = errors.New("malformed grpc-timeout")
)

// Forward is the terminal step of a route to a gRPC upstream.
func (g *GRPC) Forward(c *filter.Ctx) {
	ct := c.Request.Header.ContentType()
	st := edge.StreamOf(c.RequestCtx)
	web := isGRPCWeb(ct)
	switch {
	case !web && !IsGRPC(ct):
		c.Fail(fasthttp.StatusUnsupportedMediaType, errGRPCType)
		return
	case !web && st == nil:
		c.Fail(fasthttp.StatusHTTPVersionNotSupported, errGRPCOverHTTP1)
		return
	}
	if g.u.closed.Load() {
		c.Fail(fasthttp.StatusServiceUnavailable, fmt.Errorf("upstream %q: %w", g.u.name, errUpstreamClosed))
		return
	}
	timeout, err := ParseGRPCTimeout(c.Request.Header.Peek("Grpc-Timeout"))
	if err != nil {
		if st != nil {
			g.answerStatus(c, st, GRPCInternal, err.Error())
		} else {
			c.Fail(fasthttp.StatusBadRequest, err)
		}
		return
	}
	parent := context.Background()
	if st != nil {
		parent = st.R.Context() // cancelled when the client resets the stream or goes away
	}
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(parent, timeout)
	} else {
		ctx, cancel = context.WithCancel(parent)
	}
	resp, err := g.roundTrip(ctx, c, web)
	if err != nil {
		cancel()
		code, msg := failureStatus(ctx, err, timeout > 0, "upstream unavailable")
		c.SetReason(fmt.Sprintf("upstream %q: %v", g.u.name, err))
		if st != nil {
			g.answerStatus(c, st, code, msg)
		} else {
			webStatus(c, code, msg)
		}
		return
	}
	c.UpstreamStatus = resp.StatusCode
	if resp.StatusCode != http.StatusOK && resp.Header.Get("Grpc-Status") == "" {
		// Not a gRPC answer: its HTTP status tells the code (gRPC's HTTP to gRPC mapping).
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, grpcUpstreamDrainLimit))
		_ = resp.Body.Close()
		cancel()
		code := GRPCStatusFromHTTP(resp.StatusCode)
		msg := "upstream answered HTTP " + strconv.Itoa(resp.StatusCode)
		if st != nil {
			g.answerStatus(c, st, code, msg)
		} else {
			webStatus(c, code, msg)
		}
		return
	}
	if web {
		g.answerWeb(ctx, cancel, c, resp)
		return
	}
	defer cancel()
	g.answerStream(ctx, c, st, resp)
}

// roundTrip sends the call to a target, trying the others when one cannot be connected to
// (nothing of the call was sent then). It returns once the upstream's response headers came.
func (g *GRPC) roundTrip(ctx context.Context, c *filter.Ctx, web bool) (*http.Response, error) {
	u := g.u
	v := u.cur.Load()
	key := u.hashKey(c)
	var body io.Reader
	if c.Request.IsBodyStream() {
		body = c.Request.BodyStream()
	} else if b := c.Request.Body(); len(b) > 0 {
		body = bytes.NewReader(b)
	}
	exclude := -1
	var err error
	for attempt := 0; attempt < len(v.members); attempt++ {
		i := v.pick(key, exclude)
		if i < 0 || i == exclude {
			break
		}
		m := v.members[i]
		req := g.request(ctx, c, m.addr, body, web)
		c.Upstream = m.addr
		start := m.target.Begin()
		var resp *http.Response
		resp, err = g.tr.RoundTrip(req)
		oc := outcomeOK
		var de *dialError
		switch {
		case err == nil && resp.StatusCode >= 500:
			oc = outcome5xx
		case err == nil:
		case errors.As(err, &de):
			oc = outcomeConnect
		default:
			oc = outcomeOther
		}
		d := m.target.End(start, oc != outcomeOK)
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		u.metrics.Attempt(status, d)
		c.UpstreamTime += d
		u.pool.observe(m, oc, &u.outlier)
		if err == nil {
			return resp, nil
		}
		if oc != outcomeConnect || ctx.Err() != nil {
			return nil, err
		}
		exclude = i
	}
	if err == nil {
		err = errNoTarget
	}
	return nil, err
}

// request is the upstream request for the call: the client's fields after the route's
// filters, without hop-by-hop ones, to addr.
func (g *GRPC) request(ctx context.Context, c *filter.Ctx, addr string, body io.Reader, web bool) *http.Request {
	rh := &c.Request.Header
	h := make(http.Header, 8)
	for k, v := range rh.All() {
		if httpsyntax.IsHopByHop(k) || httpsyntax.EqualFold(k, []byte("Host")) ||
			httpsyntax.EqualFold(k, []byte("Content-Length")) {
			continue
		}
		key := http.CanonicalHeaderKey(string(k))
		h[key] = append(h[key], string(v))
	}
	if web {
		// The upstream speaks gRPC: application/grpc-web[+x] becomes application/grpc[+x].
		ct := string(rh.ContentType())
		h["Content-Type"] = []string{grpcContentType + ct[len(grpcWebContentType):]}
		delete(h, "X-Grpc-Web")
	}
	h["Te"] = []string{"trailers"} // gRPC servers expect it; hop-by-hop, so the client's was dropped
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Scheme: g.scheme, Host: addr, Opaque: string(c.Request.RequestURI())},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		Host:          string(rh.Host()),
		ContentLength: -1,
	}
	if body != nil {
		req.Body = io.NopCloser(body)
	} else {
		req.ContentLength = 0
	}
	return req.WithContext(ctx)
}

// answerStream writes the upstream's answer on the client's stream: headers, each message as
// it arrives (flushed), then the upstream's trailers. A call cut short (deadline, upstream
// reset) ends with a status trailer saying so.
func (g *GRPC) answerStream(ctx context.Context, c *filter.Ctx, st *edge.Stream, resp *http.Response) {
	defer resp.Body.Close()
	w := st.W
	st.Answered = true
	c.Response.SetStatusCode(resp.StatusCode) // for the access log and metrics
	hdr := w.Header()
	for k, vv := range resp.Header {
		if httpsyntax.IsHopByHop([]byte(k)) || k == "Content-Length" {
			continue
		}
		hdr[k] = vv
	}
	w.WriteHeader(resp.StatusCode)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)
	// A client that stops reading (and so stops granting flow-control window) must not hold
	// the call and its upstream stream forever: each message's write gets the upstream's
	// timeout, as a pause of a streamed body does. The deadline is lifted once the message is
	// out, since x/net resets a stream whose write deadline passes even while nothing is
	// written, and a server-streaming call may rightly stay quiet for long.
	stall := g.u.def.timeout
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(stall))
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away; the deferred cancel ends the upstream call
			}
			if rc.Flush() != nil {
				return
			}
			_ = rc.SetWriteDeadline(time.Time{})
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			code, msg := failureStatus(ctx, err, hasDeadline(ctx), "upstream stream broke off")
			c.SetReason(fmt.Sprintf("upstream %q: %v", g.u.name, err))
			setStatusTrailer(hdr, code, msg)
			return
		}
	}
	for k, vv := range resp.Trailer {
		hdr[http.TrailerPrefix+k] = vv
	}
	failedCall(c, resp)
}

// failedCall records a call the upstream answered with a status other than OK as the request's
// failure reason: the access log, which otherwise sees HTTP 200 for every answered call, shows
// it (and always logs it, whatever its sampling), and so does the request's span. The status is
// in the trailers, or in the headers of a trailers-only answer.
func failedCall(c *filter.Ctx, resp *http.Response) {
	code, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if code == "" || code == "0" || c.Reason() != "" {
		return
	}
	if len(msg) > 200 { // what a log line needs; the client gets it whole
		msg = msg[:200]
	}
	c.SetReason("grpc-status " + code + ": " + msg)
}

// bufPool holds the buffers answerStream copies messages through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// setStatusTrailer sets a grpc-status trailer, replacing any the upstream sent.
func setStatusTrailer(hdr http.Header, code int, msg string) {
	hdr[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(code)}
	hdr[http.TrailerPrefix+"Grpc-Message"] = []string{EncodeGRPCMessage(msg)}
}

// answerStatus answers the call on the stream with a trailers-only response: HTTP 200 and the
// status in the single HEADERS frame, as a gRPC server answers a call it fails at once.
func (g *GRPC) answerStatus(c *filter.Ctx, st *edge.Stream, code int, msg string) {
	st.Answered = true
	if c.Reason() == "" {
		c.SetReason("grpc-status " + strconv.Itoa(code) + ": " + msg)
	}
	c.Response.SetStatusCode(fasthttp.StatusOK)
	WriteGRPCStatus(st.W, code, msg)
}

// WriteGRPCStatus answers a gRPC call with a trailers-only response carrying code and msg.
func WriteGRPCStatus(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h["Content-Type"] = []string{grpcContentType}
	h["Grpc-Status"] = []string{strconv.Itoa(code)}
	if msg != "" {
		h["Grpc-Message"] = []string{EncodeGRPCMessage(msg)}
	}
	w.WriteHeader(http.StatusOK)
}

// webStatus answers a gRPC-Web call with a trailers-only response: the status in the headers,
// as gRPC-Web clients read it when the body is empty.
func webStatus(c *filter.Ctx, code int, msg string) {
	r := &c.Response
	r.Reset()
	r.SetStatusCode(fasthttp.StatusOK)
	r.Header.SetContentType(grpcWebContentType + "+proto")
	r.Header.Set("Grpc-Status", strconv.Itoa(code))
	r.Header.Set("Grpc-Message", EncodeGRPCMessage(msg))
}

// answerWeb streams the upstream's gRPC answer back as gRPC-Web through the RequestCtx (so it
// works whichever HTTP version the browser used): the messages as they arrive, then one frame
// flagged 0x80 holding the trailers.
func (g *GRPC) answerWeb(ctx context.Context, cancel context.CancelFunc, c *filter.Ctx, resp *http.Response) {
	r := &c.Response
	r.SetStatusCode(resp.StatusCode)
	for k, vv := range resp.Header {
		if httpsyntax.IsHopByHop([]byte(k)) || k == "Content-Length" || k == "Content-Type" {
			continue
		}
		for _, v := range vv {
			r.Header.Add(k, v)
		}
	}
	ct := string(c.Request.Header.ContentType())
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	r.Header.SetContentType(ct)
	if resp.Header.Get("Grpc-Status") != "" {
		// Trailers-only: the status is already in the headers.
		_ = resp.Body.Close()
		cancel()
		return
	}
	r.SetBodyStream(&webBody{resp: resp, ctx: ctx, cancel: cancel}, -1)
}

// webBody is a gRPC-Web response body: the upstream's messages, then the trailer frame.
type webBody struct {
	resp    *http.Response
	ctx     context.Context
	cancel  context.CancelFunc
	trailer []byte // the trailer frame, once the upstream's body ended
	off     int
}

func (b *webBody) Read(p []byte) (int, error) {
	if b.trailer == nil {
		n, err := b.resp.Body.Read(p)
		switch {
		case err == io.EOF:
			b.trailer = b.trailerFrame(nil)
		case err != nil:
			b.trailer = b.trailerFrame(err)
		}
		if n > 0 || err == nil {
			return n, nil
		}
	}
	if b.off >= len(b.trailer) {
		return 0, io.EOF
	}
	n := copy(p, b.trailer[b.off:])
	b.off += n
	return n, nil
}

// trailerFrame encodes the upstream's trailers (or, when its body failed with err, a status
// saying so) as gRPC-Web's final frame: flag 0x80, length, then HTTP/1 style lines.
func (b *webBody) trailerFrame(err error) []byte {
	tr := b.resp.Trailer
	if err != nil {
		code, msg := failureStatus(b.ctx, err, hasDeadline(b.ctx), "upstream stream broke off")
		tr = http.Header{"Grpc-Status": {strconv.Itoa(code)}, "Grpc-Message": {EncodeGRPCMessage(msg)}}
	}
	var lines []byte
	for k, vv := range tr {
		for _, v := range vv {
			lines = append(lines, strings.ToLower(k)...)
			lines = append(lines, ": "...)
			lines = append(lines, v...)
			lines = append(lines, "\r\n"...)
		}
	}
	frame := make([]byte, 5, 5+len(lines))
	frame[0] = grpcWebTrailerFlag
	binary.BigEndian.PutUint32(frame[1:], uint32(len(lines)))
	return append(frame, lines...)
}

// Close ends the upstream call; fasthttp closes a body stream when the response is done.
func (b *webBody) Close() error {
	b.cancel()
	return b.resp.Body.Close()
}

// hasDeadline reports a call bounded by grpc-timeout.
func hasDeadline(ctx context.Context) bool {
	_, ok := ctx.Deadline()
	return ok
}

// failureStatus is the status of a call the upstream failed with err. The deadline's expiry is
// DEADLINE_EXCEEDED whoever noticed it first: the gateway (its context), or the upstream,
// which resets the stream with CANCEL when the grpc-timeout it was sent runs out, a moment
// before the gateway's own timer would. Other resets map per gRPC's HTTP/2 transport spec.
func failureStatus(ctx context.Context, err error, deadline bool, msg string) (int, string) {
	if ctx.Err() == context.DeadlineExceeded {
		return GRPCDeadlineExceeded, "deadline exceeded"
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		switch se.Code {
		case http2.ErrCodeCancel:
			if deadline {
				return GRPCDeadlineExceeded, "deadline exceeded"
			}
			return GRPCCancelled, "upstream cancelled the call"
		case http2.ErrCodeRefusedStream:
			return GRPCUnavailable, "upstream refused the stream"
		case http2.ErrCodeEnhanceYourCalm:
			return GRPCResourceExhausted, "upstream: enhance your calm"
		case http2.ErrCodeInadequateSecurity:
			return GRPCPermissionDenied, "upstream: inadequate security"
		}
		return GRPCInternal, "upstream reset the stream: " + se.Code.String()
	}
	return GRPCUnavailable, msg
}

// ParseGRPCTimeout parses a grpc-timeout value (gRPC over HTTP/2: at most 8 digits and a unit,
// H M S m u n). An absent value is 0, no deadline.
func ParseGRPCTimeout(v []byte) (time.Duration, error) {
	if len(v) == 0 {
		return 0, nil
	}
	if len(v) < 2 || len(v) > grpcMaxTimeoutDigits+1 {
		return 0, errGRPCTimeout
	}
	var n int64
	for _, c := range v[:len(v)-1] {
		if c < '0' || c > '9' {
			return 0, errGRPCTimeout
		}
		n = n*10 + int64(c-'0')
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, errGRPCTimeout
	}
	// 99,999,999 hours overflows a Duration: such a deadline is as good as none.
	if n > int64(1<<63-1)/int64(unit) {
		return 0, nil
	}
	d := time.Duration(n) * unit
	if d == 0 {
		d = 1 // an already-expired deadline still expires
	}
	return d, nil
}

// GRPCStatusFromHTTP maps the HTTP status of a gateway or non-gRPC answer to a gRPC code, per
// gRPC's "HTTP to gRPC status code mapping", with the gateway's own refusals named by cause:
// 429 and 413 are RESOURCE_EXHAUSTED, and a gateway timeout (504, 408) DEADLINE_EXCEEDED.
func GRPCStatusFromHTTP(status int) int {
	switch status {
	case 200:
		return GRPCUnknown // 200 without grpc-status: the answer was not a gRPC one
	case 400:
		return GRPCInternal
	case 401:
		return GRPCUnauthenticated
	case 403:
		return GRPCPermissionDenied
	case 404, 405:
		return GRPCUnimplemented
	case 408, 504:
		return GRPCDeadlineExceeded
	case 413, 429, 431:
		return GRPCResourceExhausted
	case 502, 503:
		return GRPCUnavailable
	}
	return GRPCUnknown
}

// EncodeGRPCMessage percent-encodes a grpc-message value: bytes outside printable ASCII, and
// '%' itself.
func EncodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
