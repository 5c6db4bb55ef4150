package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/proxy/balance"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Pool is the part of an upstream that outlives config reloads: one member per backend address
// (its keep-alive connections, its balancer state, its health), the active health checkers, the
// outlier detector and the retry budget. The engine keeps one Pool per upstream and transport
// settings in its shared store; every snapshot builds its own Upstream view on it with
// Pool.Upstream, so a reload that changes targets, weights, the algorithm, health checking or
// retries keeps the warm connections and the health of every address that stays.
//
// A Pool is closed when the last snapshot using it retires: that stops every checker.
type Pool struct {
	name string
	tr   transport

	mu      sync.Mutex
	members map[string]*member
	closed  bool

	health atomic.Pointer[HealthOptions]
	budget budget
	// views lists the live views, oldest first; the newest one's health settings are the
	// pool's. A view that closes without having been the newest (a snapshot retiring after a
	// reload) changes nothing; when the newest closes (a build that failed after creating it),
	// the settings go back to those of the view before it. vmu is taken before p.mu.
	vmu   sync.Mutex
	views []*Upstream
	// ejected counts members currently ejected by outlier detection, for the ejection cap;
	// size is len(members), readable without p.mu.
	ejected atomic.Int32
	size    atomic.Int32
}

// transport is what every connection of a pool shares. Changing any of it means new
// connections, so the engine keys pools by it.
type transport struct {
	connectTimeout time.Duration
	idleTimeout    time.Duration
	maxConnWait    time.Duration
	maxConns       int
	tls            *tls.Config // nil: plain TCP
}

// member is one backend address of a pool.
type member struct {
	addr string // what is dialled: "ip:port" or "host:port"
	// host is the configured host name the address came from (DNS discovery), for TLS server
	// name verification; empty for literal addresses.
	host   string
	target *balance.Target
	hc     *fasthttp.HostClient
	pool   *Pool

	refs int // views using it; guarded by pool.mu

	// Passive health: consecutive failures seen by real requests.
	consec5xx  atomic.Int32
	consecConn atomic.Int32

	mu           sync.Mutex
	unhealthy    bool // active checks failed unhealthy_threshold times in a row
	okRun        int
	failRun      int
	ejectedUntil time.Time
	ejections    int // how many times in a row it was ejected; grows the cooldown
	unejectedAt  time.Time
	ejectTimer   *time.Timer
	last         CheckResult
	stop         chan struct{} // closes the active checker
	checkerDone  chan struct{}
}

// CheckResult is the outcome of the last active health check of a target.
type CheckResult struct {
	Time     time.Time     `json:"time"`
	Status   int           `json:"status,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	OK       bool          `json:"ok"`
}

func newPool(name string, o *Options) (*Pool, error) {
	def := func(v, d time.Duration) time.Duration {
		if v == 0 {
			return d
		}
		return v
	}
	p := &Pool{name: name, members: map[string]*member{}}
	p.tr = transport{
		connectTimeout: def(o.ConnectTimeout, DefaultConnectTimeout),
		idleTimeout:    def(o.IdleTimeout, DefaultIdleTimeout),
		maxConnWait:    def(o.MaxConnWait, DefaultMaxConnWait),
		maxConns:       o.MaxConns,
	}
	if p.tr.maxConnWait < 0 {
		p.tr.maxConnWait = 0
	}
	if p.tr.maxConns == 0 {
		p.tr.maxConns = DefaultMaxConns
	}
	if o.TLS != nil {
		cfg, err := o.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", name, err)
		}
		p.tr.tls = cfg
	}
	p.health.Store(&HealthOptions{})
	livePools.add(p)
	return p, nil
}

// NewPool builds the long-lived part of an upstream from the transport settings of o
// (ConnectTimeout, IdleTimeout, MaxConnWait, MaxConns, TLS); the rest of
// o is read by Pool.Upstream.
func NewPool(o Options) (*Pool, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	return newPool(o.Name, &o)
}

// Close stops every health checker and ejection timer and closes idle connections. Views built
// on the pool must not be used afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	livePools.remove(p)
	ms := make([]*member, 0, len(p.members))
	for _, m := range p.members {
		ms = append(ms, m)
	}
	p.members = map[string]*member{}
	p.size.Store(0)
	p.mu.Unlock()
	for _, m := range ms {
		m.shutdown()
	}
	return nil
}

// acquire returns the member for addr with a reference added, creating it on first use.
func (p *Pool) acquire(addr, host string, weight int) (*member, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("upstream %q: %w", p.name, errUpstreamClosed)
	}
	m := p.members[addr]
	if m == nil {
		m = p.newMember(addr, host, weight)
		p.members[addr] = m
		p.size.Store(int32(len(p.members)))
		if h := p.health.Load(); h.enabled() {
			m.startChecker()
		}
	} else {
		m.target.SetWeight(weight)
	}
	m.refs++
	return m, nil
}

// release drops a reference; the last one stops the member's checker and closes its idle
// connections. Requests still holding the member finish normally.
func (p *Pool) release(m *member) {
	p.mu.Lock()
	m.refs--
	last := m.refs == 0 && p.members[m.addr] == m
	if last {
		delete(p.members, m.addr)
		p.size.Store(int32(len(p.members)))
	}
	p.mu.Unlock()
	if last {
		m.shutdown()
	}
}

// addView registers a new view and makes its health settings the pool's.
func (p *Pool) addView(u *Upstream) {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	p.views = append(p.views, u)
	p.setHealth(u.health)
}

// removeView forgets a closed view; when it was the newest, the settings of the view before it
// apply again.
func (p *Pool) removeView(u *Upstream) {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	for i, v := range p.views {
		if v != u {
			continue
		}
		newest := i == len(p.views)-1
		p.views = append(p.views[:i], p.views[i+1:]...)
		if newest && len(p.views) > 0 {
			p.setHealth(p.views[len(p.views)-1].health)
		}
		return
	}
}

// setHealth installs the health settings of the newest view and starts or stops checkers to
// match.
func (p *Pool) setHealth(h HealthOptions) {
	old := p.health.Swap(&h)
	if old.key() == h.key() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.members {
		m.stopChecker()
		if h.enabled() {
			m.startChecker()
		} else {
			// Without active checks nothing would ever mark the target healthy again.
			m.mu.Lock()
			m.unhealthy, m.okRun, m.failRun = false, 0, 0
			m.updateLocked()
			m.mu.Unlock()
		}
	}
}

func (p *Pool) newMember(addr, host string, weight int) *member {
	m := &member{addr: addr, host: host, target: balance.NewTarget(addr, weight), pool: p}
	tr := &p.tr
	dialer := &net.Dialer{Timeout: tr.connectTimeout}
	var tcfg *tls.Config
	if tr.tls != nil {
		tcfg = tr.tls.Clone()
		if tcfg.ServerName == "" {
			if host != "" {
				tcfg.ServerName = host
			} else if h, _, err := net.SplitHostPort(addr); err == nil {
				tcfg.ServerName = h
			}
		}
	}
	dial := func(a string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), tr.connectTimeout)
		defer cancel()
		c, err := dialer.DialContext(ctx, "tcp", a)
		if err != nil {
			return nil, &dialError{err: err}
		}
		if tcfg == nil {
			return &upConn{Conn: c}, nil
		}
		// The handshake is part of connecting: it is bounded by the connect timeout, and a
		// failure is as safe to retry elsewhere as a refused connection, since no request byte
		// was sent.
		tc := tls.Client(c, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, &dialError{err: fmt.Errorf("tls handshake: %w", err)}
		}
		return &upConn{Conn: tc}, nil
	}
	m.hc = &fasthttp.HostClient{
		Addr:                          addr,
		Name:                          p.name,
		Dial:                          dial,
		MaxConns:                      tr.maxConns,
		MaxIdleConnDuration:           tr.idleTimeout,
		MaxConnWaitTimeout:            tr.maxConnWait,
		ReadBufferSize:                maxResponseHeader,
		WriteBufferSize:               16 << 10,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		StreamResponseBody:            true,
		// Reuse the most recently released connection: it is the warmest, its idle gap is the
		// shortest (so the unsolicited-bytes peek is rarely needed), and connections beyond
		// what the load needs go idle and are closed by MaxIdleConnDuration.
		ConnPoolStrategy: fasthttp.LIFO,
	}
	return m
}

func (m *member) shutdown() {
	m.stopChecker()
	m.mu.Lock()
	if m.ejectTimer != nil {
		m.ejectTimer.Stop()
		m.ejectTimer = nil
	}
	if !m.ejectedUntil.IsZero() {
		m.ejectedUntil = time.Time{}
		m.pool.ejected.Add(-1)
	}
	m.mu.Unlock()
	m.hc.CloseIdleConnections()
}

// updateLocked publishes the member's availability to the balancers: healthy and not ejected.
func (m *member) updateLocked() {
	m.target.SetAvailable(!m.unhealthy && m.ejectedUntil.IsZero())
}

// State names the member's state for the admin API.
func (m *member) state() (state string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.unhealthy:
		return "unhealthy", time.Time{}
	case !m.ejectedUntil.IsZero():
		return "ejected", m.ejectedUntil
	}
	return "healthy", time.Time{}
}

// TargetStatus describes one target for the admin API.
type TargetStatus struct {
	Address      string     `json:"address"`
	Host         string     `json:"host,omitempty"`
	Weight       int        `json:"weight"`
	State        string     `json:"state"`
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	InFlight     int64      `json:"in_flight"`
	EWMA         string     `json:"ewma_latency"`
	EWMANanos    int64      `json:"ewma_latency_ns"`
	// Connections counts the target's open upstream connections (busy, idle, or being
	// dialled), IdleConnections those waiting in the pool for reuse; both are read from the
	// pool when asked, never counted per request.
	Connections     int          `json:"connections"`
	IdleConnections int          `json:"idle_connections"`
	LastCheck       *CheckResult `json:"last_check,omitempty"`
}

// Status lists every target of the pool, sorted by address.
func (p *Pool) Status() []TargetStatus {
	p.mu.Lock()
	ms := make([]*member, 0, len(p.members))
	for _, m := range p.members {
		ms = append(ms, m)
	}
	p.mu.Unlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].addr < ms[j].addr })
	out := make([]TargetStatus, 0, len(ms))
	for _, m := range ms {
		st, until := m.state()
		e := m.target.EWMA()
		ts := TargetStatus{
			Address: m.addr, Host: m.host, Weight: m.target.Weight(), State: st,
			InFlight: m.target.InFlight(), EWMA: e.String(), EWMANanos: int64(e),
			Connections: m.hc.ConnsCount(), IdleConnections: m.hc.IdleConnsCount(),
		}
		if !until.IsZero() {
			ts.EjectedUntil = &until
		}
		m.mu.Lock()
		if !m.last.Time.IsZero() {
			lc := m.last
			ts.LastCheck = &lc
		}
		m.mu.Unlock()
		out = append(out, ts)
	}
	return out
}

// Name is the upstream's name.
func (p *Pool) Name() string { return p.name }

// outcome is what one attempt on a member told the passive health check.
type outcome uint8

const (
	outcomeOK outcome = iota
	outcome5xx
	outcomeConnect
	outcomeOther // timeouts and malformed responses: counted as 5xx, as Envoy's gateway errors
)

// observe feeds one attempt's outcome to outlier detection. The success path is two atomic
// stores when the counters are already zero.
func (p *Pool) observe(m *member, oc outcome, o *OutlierOptions) {
	switch oc {
	case outcomeOK:
		if m.consec5xx.Load() != 0 {
			m.consec5xx.Store(0)
		}
		if m.consecConn.Load() != 0 {
			m.consecConn.Store(0)
		}
		return
	case outcomeConnect:
		n := m.consecConn.Add(1)
		if o.ConsecutiveConnectFailures > 0 && int(n) >= o.ConsecutiveConnectFailures {
			p.eject(m, o)
		}
	default:
		n := m.consec5xx.Add(1)
		if o.Consecutive5xx > 0 && int(n) >= o.Consecutive5xx {
			p.eject(m, o)
		}
	}
}

// eject takes m out of rotation for base × (times ejected in a row), capped at MaxEjection,
// unless that would eject more than MaxEjectedPercent of the pool.
func (p *Pool) eject(m *member, o *OutlierOptions) {
	// The pool size is read before taking m.mu: p.mu must never be taken under a member's
	// lock, since setHealth holds p.mu while it waits for checkers that take member locks.
	n := int(p.size.Load())
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ejectedUntil.IsZero() {
		return
	}
	allowed := o.MaxEjectedPercent * n / 100
	if allowed == 0 && o.MaxEjectedPercent > 0 && n > 1 {
		// A small pool may still lose one target, or a 3-target pool at 20% could never eject.
		allowed = 1
	}
	if int(p.ejected.Load()) >= allowed {
		return
	}
	p.ejected.Add(1)
	telemetry.UpstreamEjected(p.name, m.addr)
	// A target that behaved for longer than the longest ejection since its last one starts
	// the cooldown over, so a blip next week is not punished for last week's outage.
	if !m.unejectedAt.IsZero() && time.Since(m.unejectedAt) > max(o.MaxEjection, o.BaseEjection) {
		m.ejections = 0
	}
	m.ejections++
	d := time.Duration(min(float64(o.BaseEjection)*float64(m.ejections), float64(math.MaxInt64)))
	if o.MaxEjection > 0 && d > o.MaxEjection {
		d = o.MaxEjection
	}
	m.ejectedUntil = time.Now().Add(d)
	m.consec5xx.Store(0)
	m.consecConn.Store(0)
	m.updateLocked()
	until := m.ejectedUntil
	m.ejectTimer = time.AfterFunc(d, func() { m.uneject(until, false) })
}

// uneject returns m to rotation when the ejection that ends at until is still in force (a later
// ejection has its own timer). byCheck is true when an active check passed: that ends the
// ejection early and, unlike a plain expiry, forgets the ejection history.
func (m *member) uneject(until time.Time, byCheck bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ejectedUntil.IsZero() || (!byCheck && !m.ejectedUntil.Equal(until)) {
		return
	}
	m.ejectedUntil = time.Time{}
	m.unejectedAt = time.Now()
	if m.ejectTimer != nil {
		m.ejectTimer.Stop()
		m.ejectTimer = nil
	}
	if byCheck {
		m.ejections = 0
	}
	m.pool.ejected.Add(-1)
	m.updateLocked()
}

var errNoTarget = errors.New("no healthy target")
