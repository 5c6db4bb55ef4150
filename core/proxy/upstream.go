package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/core/proxy/balance"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/core/telemetry/tracing"
)

// Defaults applied to zero Options fields. They favour failing fast under overload over piling
// requests up: an edge proxy that queues without bound turns a slow upstream into an outage.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTimeout        = 60 * time.Second
	DefaultIdleTimeout    = 10 * time.Second
	DefaultMaxConnWait    = time.Second
	DefaultMaxConns       = 512
	DefaultDNSRefresh     = 30 * time.Second
)

// maxResponseHeader bounds the response header section an upstream may send: it is the read
// buffer of every upstream connection, so a larger header fails that exchange.
const maxResponseHeader = 16 << 10

// idlePeekAfter is how long a pooled connection must have been idle before it is checked for
// unsolicited bytes with a system call.
const idlePeekAfter = time.Millisecond

// smallBody is the largest upstream body of known length that is read whole before the response
// is handed back: it spares small responses the streaming machinery, frees the upstream
// connection before the client has read anything, and lets response filters see the body.
const smallBody = 64 << 10

// Options configures an Upstream. Zero durations and sizes take the defaults above.
type Options struct {
	// Name identifies the upstream in errors and logs.
	Name string
	// Targets are "host:port" addresses. A host that is a name is resolved (A and AAAA) and
	// re-resolved every DNSRefresh, each address becoming a target; "srv:_service._proto.name"
	// is resolved as an SRV record whose weights become target weights.
	Targets []string
	// Weights, when not nil, is parallel to Targets: relative weights 1..balance.MaxWeight.
	Weights []int
	// Balance is a balance.Algorithms name; empty means round robin.
	Balance string
	// HashOn is consistent_hash's key: "client_ip" (the default), "header:<name>" or
	// "cookie:<name>". BoundedLoad is its load factor (0: balance.DefaultHashBoundedLoad).
	HashOn      string
	BoundedLoad float64
	// DNSRefresh is how often name targets are resolved again; negative dials names as written
	// (one target per name, resolved by each new connection).
	DNSRefresh time.Duration
	// ConnectTimeout bounds establishing one connection, TLS handshake included.
	ConnectTimeout time.Duration
	// Timeout bounds the wait for the response header after the request was sent (time to first
	// byte) and, while a body streams, any wait for its next bytes.
	Timeout time.Duration
	// RequestTimeout, when set, bounds the whole exchange across all attempts, from the first
	// connect to the last byte of the response body, like Envoy's route timeout.
	RequestTimeout time.Duration
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
	// Health configures active checks, Outlier passive ones, Retry retries.
	Health  HealthOptions
	Outlier OutlierOptions
	Retry   RetryOptions
	// TLS, when not nil, speaks TLS to every target.
	TLS *TLSOptions
	// OnDNSError is told when re-resolving a name fails (the previous addresses are kept).
	OnDNSError func(name string, err error)
}

// RouteOptions overrides an upstream's timeouts and retries for one route; nil fields keep the
// upstream's settings.
type RouteOptions struct {
	Timeout        *time.Duration
	RequestTimeout *time.Duration
	Retry          *RetryOptions
}

// policy is the per-route part of forwarding, fixed at config build.
type policy struct {
	timeout time.Duration
	request time.Duration
	retry   RetryOptions
}

// Upstream forwards requests to the targets of a Pool, chosen by a balancer, with retries,
// timeouts and passive health checking. One Upstream is built per config snapshot; the Pool
// below it outlives reloads. It is safe for concurrent use and is closed explicitly when its
// snapshot retires.
type Upstream struct {
	name      string
	metrics   *telemetry.UpstreamMetrics // per attempt; in-flight and health are read at scrape (metrics.go)
	pool      *Pool
	ownPool   bool
	algorithm string
	balOpts   balance.Options
	hashOn    hashKind
	hashName  []byte
	def       policy
	via       string
	specs     []targetSpec
	health    HealthOptions
	outlier   OutlierOptions
	refresh   time.Duration
	onDNSErr  func(string, error)

	cur    atomic.Pointer[view]
	mu     sync.Mutex // serialises install and Close
	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

// view is one immutable target list and its balancer. DNS discovery replaces the whole view.
type view struct {
	members []*member
	bal     balance.Balancer
}

// pick is the balancer's choice for key avoiding exclude (-1: none), or exclude itself when
// it is the only available target: a retry goes to the target that just failed rather than
// giving up, since a connect failure may be a blip.
func (v *view) pick(key []byte, exclude int) int {
	i := v.bal.Pick(key, exclude)
	if i < 0 && exclude >= 0 {
		i = v.bal.Pick(key, -1)
	}
	return i
}

type hashKind uint8

const (
	hashNone hashKind = iota
	hashClientIP
	hashHeader
	hashCookie
)

// dialError marks a failure to connect, which is safe to retry on another target because no
// byte of the request has been sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// check validates o without building anything.
func (o *Options) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"connect timeout", o.ConnectTimeout}, {"timeout", o.Timeout}, {"request timeout", o.RequestTimeout},
		{"idle timeout", o.IdleTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("upstream %q: negative %s %v", o.Name, d.name, d.v)
		}
	}
	if o.MaxConns < 0 {
		return fmt.Errorf("upstream %q: negative size limit", o.Name)
	}
	if o.Via != "" && !httpsyntax.IsToken(o.Via) {
		return fmt.Errorf("upstream %q: via %q is not a token", o.Name, o.Via)
	}
	return nil
}

// Upstream builds a snapshot's view of the pool from o. Transport settings in o are ignored
// (they are the pool's); everything else applies to this view, and o's health settings become
// the pool's while this is its newest view.
func (p *Pool) Upstream(o Options) (*Upstream, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if len(o.Targets) == 0 {
		return nil, fmt.Errorf("upstream %q: no targets", o.Name)
	}
	if o.Weights != nil && len(o.Weights) != len(o.Targets) {
		return nil, fmt.Errorf("upstream %q: %d weights for %d targets", o.Name, len(o.Weights), len(o.Targets))
	}
	def := func(v, d time.Duration) time.Duration {
		if v == 0 {
			return d
		}
		return v
	}
	u := &Upstream{
		name:      o.Name,
		metrics:   telemetry.Upstream(o.Name),
		pool:      p,
		algorithm: o.Balance,
		balOpts:   balance.Options{HashBoundedLoad: o.BoundedLoad},
		def:       policy{timeout: def(o.Timeout, DefaultTimeout), request: o.RequestTimeout, retry: o.Retry},
		refresh:   def(o.DNSRefresh, DefaultDNSRefresh),
		onDNSErr:  o.OnDNSError,
	}
	if u.algorithm == "" {
		u.algorithm = balance.RoundRobin
	}
	if u.algorithm == balance.ConsistentHash {
		var err error
		if u.hashOn, u.hashName, err = parseHashOn(o.HashOn); err != nil {
			return nil, fmt.Errorf("upstream %q: %w", o.Name, err)
		}
	}
	if o.Via != "" {
		u.via = "1.1 " + o.Via
	}
	if err := checkRetry(&u.def.retry); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", o.Name, err)
	}
	for i, t := range o.Targets {
		w := 1
		if o.Weights != nil {
			w = o.Weights[i]
		}
		spec, err := parseTarget(t, w, u.refresh > 0)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: target %q: %w", o.Name, t, err)
		}
		u.specs = append(u.specs, spec)
	}
	// Build a balancer once with placeholder targets so that a bad algorithm or option fails the
	// config build rather than the first resolution.
	probe := []*balance.Target{balance.NewTarget("probe", 1)}
	if _, err := balance.New(u.algorithm, probe, u.balOpts); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", o.Name, err)
	}
	health, outlier := o.Health, o.Outlier
	if health.enabled() {
		health.Interval = def(health.Interval, DefaultHealthInterval)
		health.Timeout = def(health.Timeout, DefaultHealthTimeout)
		if health.HealthyThreshold == 0 {
			health.HealthyThreshold = DefaultHealthyThreshold
		}
		if health.UnhealthyThreshold == 0 {
			health.UnhealthyThreshold = DefaultUnhealthyThreshold
		}
	}
	u.health, u.outlier = health, outlier

	entries := u.resolveAll(context.Background())
	if err := u.install(entries); err != nil {
		return nil, err
	}
	p.addView(u)
	if u.dynamic() {
		u.stop, u.done = make(chan struct{}), make(chan struct{})
		go u.refreshLoop()
	}
	return u, nil
}

func checkRetry(r *RetryOptions) error {
	if r.Attempts < 0 || r.BackoffBase < 0 || r.BackoffMax < 0 || r.MinRetriesPerSecond < 0 {
		return errors.New("negative retry setting")
	}
	if r.BackoffMax == 0 {
		r.BackoffMax = max(r.BackoffBase*10, DefaultBackoffMax)
	}
	return nil
}

func parseHashOn(s string) (hashKind, []byte, error) {
	switch {
	case s == "" || s == "client_ip":
		return hashClientIP, nil, nil
	case strings.HasPrefix(s, "header:") && httpsyntax.IsToken(s[len("header:"):]):
		return hashHeader, []byte(s[len("header:"):]), nil
	case strings.HasPrefix(s, "cookie:") && len(s) > len("cookie:"):
		return hashCookie, []byte(s[len("cookie:"):]), nil
	}
	return 0, nil, fmt.Errorf("hash_on %q: want client_ip, header:<name> or cookie:<name>", s)
}

// install makes entries the current view, acquiring their members from the pool and releasing
// those of the view it replaces.
func (u *Upstream) install(entries []entry) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed.Load() {
		return nil
	}
	v := &view{}
	targets := make([]*balance.Target, 0, len(entries))
	for _, e := range entries {
		m, err := u.pool.acquire(e.addr, e.host, e.weight)
		if err != nil {
			u.releaseMembers(v.members)
			return err
		}
		v.members = append(v.members, m)
		targets = append(targets, m.target)
	}
	bal, err := balance.New(u.algorithm, targets, u.balOpts)
	if err != nil {
		u.releaseMembers(v.members)
		return fmt.Errorf("upstream %q: %w", u.name, err)
	}
	v.bal = bal
	if old := u.cur.Swap(v); old != nil {
		u.releaseMembers(old.members)
	}
	return nil
}

func (u *Upstream) releaseMembers(ms []*member) {
	for _, m := range ms {
		u.pool.release(m)
	}
}

// Pool returns the long-lived pool under this view.
func (u *Upstream) Pool() *Pool { return u.pool }

// Targets returns the current target addresses, in balancer order.
func (u *Upstream) Targets() []string {
	v := u.cur.Load()
	out := make([]string, len(v.members))
	for i, m := range v.members {
		out[i] = m.addr
	}
	return out
}

// Close stops DNS refreshes and releases this view's members; connections still in use are
// closed when released. A standalone upstream also closes its pool.
func (u *Upstream) Close() error {
	u.mu.Lock()
	if u.closed.Swap(true) {
		u.mu.Unlock()
		return nil
	}
	stop, done := u.stop, u.done
	u.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	u.pool.removeView(u)
	u.mu.Lock()
	if v := u.cur.Load(); v != nil {
		u.releaseMembers(v.members)
	}
	u.mu.Unlock()
	if u.ownPool {
		return u.pool.Close()
	}
	return nil
}

var (
	errUpstreamClosed   = errors.New("upstream closed")
	errMalformedFraming = errors.New("malformed upstream response framing")
	errClientBody       = errors.New("read request body from client")
)

// RouteUpstream is the upstream as one route sees it: the route's own timeouts and retries
// over the upstream's targets. Its Forward is that route's terminal step.
type RouteUpstream struct {
	u *Upstream
	p policy
}

// Forward is Upstream.Forward under the route's policy.
func (r *RouteUpstream) Forward(c *filter.Ctx) { r.u.forward(c, &r.p) }

// Route returns the upstream for a route that overrides some of the upstream's timeouts or
// retries. It is built at config build; its Forward allocates nothing per request.
func (u *Upstream) Route(o RouteOptions) (*RouteUpstream, error) {
	p := u.def
	if o.Timeout != nil {
		p.timeout = *o.Timeout
		if p.timeout == 0 {
			p.timeout = DefaultTimeout
		}
	}
	if o.RequestTimeout != nil {
		p.request = *o.RequestTimeout
	}
	if o.Retry != nil {
		p.retry = *o.Retry
	}
	if p.timeout < 0 || p.request < 0 {
		return nil, errors.New("negative timeout")
	}
	if err := checkRetry(&p.retry); err != nil {
		return nil, err
	}
	return &RouteUpstream{u: u, p: p}, nil
}

// Forward sends c.Request to a target chosen by the balancer and writes the response into
// c.Response, or replies with a JSON error through c.Fail:
//
//	502: connection refused, no route, connect timeout, reset, malformed response
//	503: no available target (all unhealthy or ejected), no free connection, upstream closed
//	504: no response header within Timeout, or the request ran past RequestTimeout
//	400: the client's own body was malformed or cut short (the connection is closed)
//
// A failed attempt is retried, on another target when there is one, when that is safe: always
// after a failure to connect (nothing was sent), otherwise only for an idempotent request
// without a body. Retries wait an exponential, jittered backoff (or the upstream's
// Retry-After), and are capped by the retry budget so that they cannot multiply an outage.
//
// Bodies stream in both directions; a response of known length up to 64 KiB is read whole.
// When the upstream fails after part of a streamed response was sent, the client connection is
// closed, which is the only way left to tell it the response is incomplete.
func (u *Upstream) Forward(c *filter.Ctx) { u.forward(c, &u.def) }

func (u *Upstream) forward(c *filter.Ctx, p *policy) {
	if u.closed.Load() {
		c.Fail(fasthttp.StatusServiceUnavailable, fmt.Errorf("upstream %q: %w", u.name, errUpstreamClosed))
		return
	}
	v := u.cur.Load()
	if err := u.prepareRequest(&c.Request); err != nil {
		c.Fail(fasthttp.StatusBadGateway, fmt.Errorf("upstream %q: %w", u.name, err))
		return
	}

	var rb *clientBody
	if c.Request.IsBodyStream() {
		// Wrap the client body so a failure reading it is told apart from a failure writing it.
		rb = &clientBody{r: c.Request.BodyStream()}
		c.Request.SetBodyStream(rb, c.Request.Header.ContentLength())
	}
	now := time.Now()
	var reqDeadline time.Time
	if p.request > 0 {
		reqDeadline = now.Add(p.request)
	}
	u.pool.budget.request(now.Unix())
	// Resending is safe only when nothing of the request can have had an effect twice: an
	// idempotent method and no body at all. A declared empty body arrives as an empty stream
	// and carries nothing either; reading a stream to see (Body) would pull it into memory.
	resendable := idempotent(&c.Request.Header) &&
		(rb == nil && len(c.Request.Body()) == 0 || rb != nil && c.Request.Header.ContentLength() == 0)
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
		if attempt > 0 {
			now = time.Now()
		}
		err = u.attempt(c, v.members[i], p, now, reqDeadline, rb, attempt)
		if attempt >= p.retry.Attempts || rb.failed() {
			break
		}
		wait, again := u.retryWait(c, err, p, resendable)
		if !again {
			break
		}
		if wait == 0 {
			wait = backoff(attempt+1, p.retry.BackoffBase, p.retry.BackoffMax)
		}
		if !reqDeadline.IsZero() && time.Now().Add(wait).After(reqDeadline) {
			if err == nil {
				err = fasthttp.ErrTimeout // the answer to retry was dropped
			}
			break
		}
		if wait > 0 {
			time.Sleep(wait)
		}
		u.metrics.Retry()
		if len(v.members) > 1 {
			exclude = i
		}
	}
	if err != nil {
		u.fail(c, err, rb)
	}
}

// hashKey is what consistent_hash balances on for this request (nil for other balancers).
func (u *Upstream) hashKey(c *filter.Ctx) []byte {
	switch u.hashOn {
	case hashClientIP:
		return c.RemoteIP()
	case hashHeader:
		return c.Request.Header.PeekBytes(u.hashName)
	case hashCookie:
		return c.Request.Header.CookieBytes(u.hashName)
	}
	return nil
}

// attempt sends the request to m once (n is 0 for the first try, then the retry's number) and
// records the outcome for balancing and outlier detection. nil means c.Response holds m's
// answer, whatever its status. A sampled request gets a client span per attempt, whose
// traceparent the upstream receives. now is the time the attempt starts: the caller's clock
// read serves the deadline and the latency sample both.
func (u *Upstream) attempt(c *filter.Ctx, m *member, p *policy, now, reqDeadline time.Time, rb *clientBody, n int) error {
	c.Upstream = m.addr
	deadline := now.Add(p.timeout)
	if !reqDeadline.IsZero() && reqDeadline.Before(deadline) {
		deadline = reqDeadline
	}
	start := m.target.BeginAt(now)
	span := tracing.StartUpstream(c, u.name, m.addr, n)
	err := u.exchange(c, m.hc, now, deadline, reqDeadline, p.timeout, rb)
	span.EndUpstream(c, err)
	oc := outcomeOK
	if err != nil {
		oc = classify(err)
	} else if c.Response.StatusCode() >= 500 {
		oc = outcome5xx
	}
	d := m.target.End(start, oc != outcomeOK)
	status := 0 // no answer
	if err == nil {
		status = c.Response.StatusCode()
	}
	u.metrics.Attempt(status, d)
	c.UpstreamStatus = status
	c.UpstreamTime += d
	u.pool.observe(m, oc, &u.outlier)
	return err
}

// retryWait decides whether the attempt that ended with err (nil: an answer in c.Response) is
// retried, withdrawing the retry from the budget when it is, and how long to wait first (0:
// the backoff). A failure to connect is always safe to retry, and so is any other failure of a
// resendable request except a timeout: the backend is slow, not broken, and a retry would
// both add load to it and make the client wait past the timeout it was promised. An answer is
// retried only when it is a gateway error (502, 503, 504), the route retries those and the
// request is resendable; then it is dropped, and the upstream's Retry-After is the wait.
func (u *Upstream) retryWait(c *filter.Ctx, err error, p *policy, resendable bool) (time.Duration, bool) {
	var wait time.Duration
	if err != nil {
		var de *dialError
		if !errors.As(err, &de) && !errors.Is(err, fasthttp.ErrNoFreeConns) && (!resendable || isTimeout(err)) {
			return 0, false
		}
	} else {
		sc := c.Response.StatusCode()
		if !p.retry.RetryOn5xx || !resendable || (sc != 502 && sc != 503 && sc != 504) {
			return 0, false
		}
		ra, has := retryAfter(c.Response.Header.Peek(hRetryAfter), time.Now())
		if has && ra > p.retry.BackoffMax {
			// The upstream asked for more patience than a retry may take: pass its answer on.
			return 0, false
		}
		if has {
			wait = ra
		}
	}
	if !u.pool.budget.withdraw(time.Now().Unix(), p.retry.BudgetRatio, p.retry.MinRetriesPerSecond) {
		return 0, false
	}
	if err == nil {
		if c.Response.IsBodyStream() {
			_ = c.Response.CloseBodyStream()
		}
		c.Response.Reset()
	}
	return wait, true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout())
}

// classify maps an attempt's error to what outlier detection counts.
func classify(err error) outcome {
	var de *dialError
	if errors.As(err, &de) {
		return outcomeConnect
	}
	if errors.Is(err, fasthttp.ErrNoFreeConns) {
		// The pool is busy, not broken: not a health signal.
		return outcomeOK
	}
	return outcomeOther
}

func (u *Upstream) prepareRequest(req *fasthttp.Request) error {
	h := &req.Header
	// The upstream connection's lifetime is the gateway's business, and the request is always
	// sent as HTTP/1.1 whatever the client spoke.
	h.ResetConnectionClose()
	if !h.IsHTTP11() {
		h.SetProtocol("HTTP/1.1")
	}
	// The server already answered "100 Continue" to the client before the body was read;
	// forwarding the expectation would only make the upstream wait for nothing.
	if len(h.Peek("Expect")) > 0 {
		h.Del("Expect")
	}
	// Send exactly the path and query the pipeline last saw, and Host only from the Host
	// field. Normalizing here would let the upstream see another resource than the one the
	// route and filters matched on (the edge normalized it once already). And given a parsed
	// URI, fasthttp's Request.Write replaces Host with the URI's host and adds Authorization
	// from its userinfo: a target a filter or plugin set ("//evil.example/x",
	// "http://u:p@evil.example/x") would then change headers after every filter ran. Setting
	// the target anew leaves the URI unparsed, so Write sends the header as it stands;
	// UseHostHeader keeps Host even if something parses the URI again.
	uri := req.URI()
	uri.DisablePathNormalizing = true
	req.SetRequestURIBytes(uri.RequestURI())
	req.UseHostHeader = true
	// fasthttp labels a body without Content-Type "application/octet-stream" while writing;
	// the upstream gets the type the client and the filters left, or none.
	h.SetNoDefaultContentType(true)
	if len(h.Host()) == 0 {
		// Write would take a host from the target ("//evil.example/x" names one).
		return errNoHost
	}
	if u.via != "" {
		h.Add("Via", u.via)
	}
	return nil
}

// errNoHost: a filter removed Host, and the gateway never makes one up.
var errNoHost = errors.New("request has no host to send upstream")

func (u *Upstream) fail(c *filter.Ctx, err error, rb *clientBody) {
	status := fasthttp.StatusBadGateway
	var de *dialError
	var ne net.Error
	switch {
	case rb != nil && rb.err != nil:
		status = fasthttp.StatusBadRequest
		if errors.Is(rb.err, fasthttp.ErrBodyTooLarge) {
			status = fasthttp.StatusRequestEntityTooLarge
		}
		err = fmt.Errorf("%w: %w", errClientBody, rb.err)
		c.Response.SetConnectionClose()
	case errors.Is(err, errNoTarget):
		// Every target is down: answer at once rather than queue behind a dead pool.
		c.Fail(fasthttp.StatusServiceUnavailable, fmt.Errorf("upstream %q: %w", u.name, err))
		return
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
// c.Response holds the upstream response (its body possibly still streaming). deadline bounds
// sending and the response header (and a small body); a streamed body is bounded by
// reqDeadline when set, and otherwise by idle, renewed at every read.
func (u *Upstream) exchange(c *filter.Ctx, hc *fasthttp.HostClient, now, deadline, reqDeadline time.Time, idle time.Duration, rb *clientBody) error {
	req := &c.Request
	// A request without a body may be resent once when a pooled connection turns out to have
	// been closed by the upstream while idle; nothing else is ever resent here.
	retryStale := rb == nil && (req.Header.IsGet() || req.Header.IsHead() || req.Header.IsOptions())
	for first := true; ; first = false {
		if !first {
			now = time.Now()
		}
		wait := deadline.Sub(now)
		if wait <= 0 {
			return fasthttp.ErrTimeout
		}
		cc, err := hc.AcquireConn(wait, false)
		if err != nil {
			return err
		}
		// A connection fresh from the dialer has never been released, so it has no last use.
		lastUse := cc.LastUseTime()
		reused := !lastUse.IsZero()
		conn := cc.Conn()
		// Bytes that arrived while a pooled connection sat idle must never be taken for the next
		// response. Peeking costs a system call, so it is done only after the connection idled
		// long enough for such bytes to arrive; a connection reused at once under load has no
		// such window (bytes that arrive once the next request is on its way cannot be told from
		// its response by any proxy), and bytes that came with the previous response are caught
		// for free when it is read (see readBody).
		if reused && now.Sub(lastUse) > idlePeekAfter && dirtyIdle(conn) {
			// Bytes no request asked for, or closed by the upstream: never send on it.
			hc.CloseConn(cc)
			continue
		}

		// The upstream response is read straight into the client's response, so a small body
		// costs no second header copy or body copy.
		out := &c.Response
		br := hc.AcquireReader(conn)
		err = u.send(hc, conn, req, deadline, deadlineSlack(wait))
		if err == nil {
			out.Header.DisableNormalizing()
			out.SkipBody = req.Header.IsHead()
			err = u.readHeader(br, out)
		}
		if err != nil {
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			out.Reset()
			if retryStale && reused && isStale(err) {
				retryStale = false
				continue
			}
			return err
		}

		reusable := !out.ConnectionClose() && !u.closed.Load()
		s, reuse, err := u.readBody(out, hc, conn, br, reqDeadline, idle)
		switch {
		case err != nil:
			hc.ReleaseReader(br)
			hc.CloseConn(cc)
			out.Reset()
			return err
		case s != nil:
			s.release = func(reuse bool) {
				if reuse && reusable && !u.closed.Load() {
					hc.ReleaseConn(cc)
				} else {
					hc.CloseConn(cc)
				}
			}
			u.stripResponse(&out.Header)
			// A body the upstream ends by closing its connection (no length, no chunking) is
			// chunked to the client like any body of unknown length: the client's connection
			// stays open, as its own framing and keep-alive allow, rather than closing because
			// the upstream's did.
			cl := out.Header.ContentLength()
			if cl < 0 {
				cl = -1
			}
			out.SetBodyStream(s, cl)
		default:
			hc.ReleaseReader(br)
			if reuse && reusable {
				hc.ReleaseConn(cc)
			} else {
				hc.CloseConn(cc)
			}
			u.stripResponse(&out.Header)
		}
		return nil
	}
}

// send writes req on conn, all of it before deadline, which may fire up to slack late (bound).
func (u *Upstream) send(hc *fasthttp.HostClient, conn net.Conn, req *fasthttp.Request, deadline time.Time, slack time.Duration) error {
	if err := bound(conn, deadline, slack); err != nil {
		return err
	}
	bw := hc.AcquireWriter(conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	return nil
}

// readBody reads the body of the response whose header out holds. A body of known length up
// to smallBody (or none) is read into out, and reuse tells whether the connection may go back
// to the pool. A larger one is left on the connection and returned as a stream, which owns
// br and the connection until the server has sent it: its response is a copy of out's header,
// since out's body becomes the stream.
func (u *Upstream) readBody(out *fasthttp.Response, hc *fasthttp.HostClient, conn net.Conn, br *bufio.Reader,
	reqDeadline time.Time, idle time.Duration) (s *respStream, reuse bool, err error) {
	cl := out.Header.ContentLength()
	skip := out.SkipBody || noBodyStatus(out.StatusCode())
	if skip || (cl >= 0 && cl <= smallBody) {
		if !skip {
			if err = out.ReadBody(br, 0); err != nil {
				return nil, false, fmt.Errorf("read response body: %w", err)
			}
		}
		// Bytes already buffered past the response were sent unasked: the connection's
		// framing can no longer be trusted, so it is closed rather than pooled.
		return nil, br.Buffered() == 0, nil
	}

	resp := fasthttp.AcquireResponse()
	out.Header.CopyTo(&resp.Header)
	s = &respStream{resp: resp, br: br, hc: hc, conn: conn}
	if reqDeadline.IsZero() {
		s.idle = idle
		err = conn.SetDeadline(time.Now().Add(idle))
	} else {
		err = conn.SetDeadline(reqDeadline)
	}
	resp.StreamBody = true
	if err == nil {
		err = resp.ReadBody(br, 0)
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, false, fmt.Errorf("read response body: %w", err)
	}
	s.src = resp.BodyStream()
	return s, false, nil
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
		if _, err = httpsyntax.CheckHeaderSection(raw[i+1:], true); err != nil {
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
			return nil, fmt.Errorf("%w: %w", errMalformedFraming, httpsyntax.ErrBadLineEnding)
		}
		n = len(b) + 1
	}
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

// stripResponse removes hop-by-hop fields from the upstream response header, including every
// field its Connection header names. Framing fields are dropped and re-derived by the server
// from the body it is given. The upstream's HTTP version goes too: the gateway answers in its
// own (RFC 9110 section 6.2), with framing and keep-alive decided for the client's connection.
//
// The pool keeps names as the upstream spelled them (DisableHeaderNamesNormalizing), so every
// match ignores case: "connection: x-secret" must go as "Connection: X-Secret" does. One scan
// finds whether any hop-by-hop field is there; most responses have none and pay only that.
func (u *Upstream) stripResponse(h *fasthttp.ResponseHeader) {
	h.SetProtocol(nil)
	hop := false
	for k := range h.All() {
		if httpsyntax.IsHopByHop(k) {
			hop = true
			break
		}
	}
	if hop {
		// Deleting fields moves their records but never rewrites the value bytes, so the
		// Connection values stay readable while the fields they name go.
		var conns [4][]byte
		n := 0
		for k, v := range h.All() {
			if n < len(conns) && httpsyntax.EqualFold(k, "Connection") {
				conns[n], n = v, n+1
			}
		}
		for _, conn := range conns[:n] {
			for len(conn) > 0 {
				var tok []byte
				tok, conn = httpsyntax.NextElement(conn)
				if len(tok) > 0 && httpsyntax.ConnectionMayRemove(tok) {
					delFold(h, tok)
				}
			}
		}
		for _, name := range httpsyntax.HopByHop {
			delFold(h, name)
		}
	}
	h.ResetConnectionClose()
	h.Del("Transfer-Encoding")
	if u.via != "" {
		h.Add("Via", u.via)
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

// failed reports whether reading the client's body failed; b may be nil (no streamed body).
func (b *clientBody) failed() bool { return b != nil && b.err != nil }

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
	conn    net.Conn
	idle    time.Duration // when set, each read may wait this long for the next bytes
	release func(reuse bool)
	eof     bool
	err     error
	closed  bool
}

func (s *respStream) Read(p []byte) (int, error) {
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	if s.idle > 0 {
		if err := s.conn.SetReadDeadline(time.Now().Add(s.idle)); err != nil {
			s.err = err
			return 0, err
		}
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

// Detach hands the stream over to a new reader and leaves s closed without touching the
// connection. A response filter that wraps the body (a cache copying it as it streams) calls
// it before fasthttp's SetBodyStream, which closes the stream it replaces; the returned reader
// then owns the connection, and its Close returns it to the pool as Close would.
func (s *respStream) Detach() io.ReadCloser {
	d := *s
	s.closed = true
	s.resp, s.src, s.br, s.conn = nil, nil, nil, nil
	return &d
}

// Trailers calls fn for each trailer field the upstream sent after a chunked body, once the
// body has been read to its end (before that, and after Close, it calls nothing). The proxy
// does not forward an upstream's trailers; a response filter that reads the whole body (a
// proxy-wasm plugin with a trailers callback) takes them over through this method before the
// stream is closed.
func (s *respStream) Trailers(fn func(k, v []byte)) {
	if s.closed || !s.eof {
		return
	}
	h := &s.resp.Header
	for _, k := range h.PeekTrailerKeys() {
		for _, v := range h.PeekAll(string(k)) {
			fn(k, v)
		}
	}
}

func (s *respStream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	_ = s.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(s.resp)
	clean := s.br.Buffered() == 0 // bytes past the body were sent unasked; see exchange
	s.hc.ReleaseReader(s.br)
	s.release(s.eof && s.err == nil && clean)
	s.resp, s.src, s.br, s.conn = nil, nil, nil, nil
	return nil
}
