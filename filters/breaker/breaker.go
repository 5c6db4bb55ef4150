package breaker

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// The breaker's states, as the "state" gauge reports them.
const (
	Closed int32 = iota
	Open
	HalfOpen
)

var stateNames = [...]string{"closed", "open", "half-open"}

// errOpen is recorded for the access log on every answer the open breaker gives.
var errOpen = errors.New("breaker: circuit open")

// Filter is the breaker of one route. The state it points to may be shared with other routes
// and with the snapshots before and after a reload.
type Filter struct {
	st      *state
	slot    int
	release func() error
}

// Close releases the shared state.
func (f *Filter) Close() error { return f.release() }

// OnRequest answers 503 with Retry-After while the breaker is open, and while it is half-open
// to every request beyond the probes. It allocates nothing.
func (f *Filter) OnRequest(c *filter.Ctx) Status {
	s := f.st
	if s.p.slowRatio > 0 {
		_ = c.Time() // start the clock when the server sets it lazily
	}
	switch s.state.Load() {
	case Closed:
		return filter.Continue
	case Open:
		now := s.now()
		left := s.openedAt.Load() + int64(s.p.openFor) - now
		if left > 0 {
			return f.reject(c, left)
		}
		s.halfOpen(now)
	}
	// Half-open: the first probes of this period go through, marked in the slot so that their
	// outcome is counted against the period that let them in.
	pr := s.probe.Load()
	if pr == nil {
		// Closed or opened again meanwhile.
		if s.state.Load() == Closed {
			return filter.Continue
		}
		return f.reject(c, int64(s.p.openFor))
	}
	if pr.admitted.Add(1) > s.p.probes {
		pr.admitted.Add(-1)
		return f.reject(c, int64(time.Second))
	}
	s.probes.Add(1)
	*c.Slot(f.slot) = pr
	return filter.Continue
}

// Status is filter.Status, named here for the method signatures.
type Status = filter.Status

func (f *Filter) reject(c *filter.Ctx, left int64) Status {
	f.st.rejected.Add(1)
	secs := (left + int64(time.Second) - 1) / int64(time.Second)
	if secs < 1 {
		secs = 1
	}
	st := c.Fail(fasthttp.StatusServiceUnavailable, errOpen)
	var buf [20]byte
	c.Response.Header.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], secs, 10))
	return st
}

// OnResponse classifies the outcome and feeds it to the state. It allocates nothing.
func (f *Filter) OnResponse(c *filter.Ctx) {
	s := f.st
	var pr *probe
	if v, ok := (*c.Slot(f.slot)).(*probe); ok {
		pr = v
	}
	if c.Err() == errOpen {
		return
	}
	o := s.classify(c)
	if pr != nil {
		s.probeDone(pr, o)
		return
	}
	if o == neutral {
		return
	}
	s.record(o)
}

type outcome uint8

const (
	neutral outcome = iota
	success
	failure
	slow
)

// classify tells what the answer says about the upstream. The gateway's own 502/503/504 carry
// an error (Ctx.Err); an error with another status is the client's fault or a later filter's
// refusal, which says nothing about the upstream.
func (s *state) classify(c *filter.Ctx) outcome {
	status := c.Response.StatusCode()
	if c.Err() != nil {
		switch status {
		case fasthttp.StatusGatewayTimeout:
			if s.p.timeouts {
				return failure
			}
			return neutral
		case fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable:
			if s.p.connErrors {
				return failure
			}
			return neutral
		}
		return neutral
	}
	if status >= 0 && status < len(s.p.statuses) && s.p.statuses[status] {
		return failure
	}
	if s.p.slowRatio > 0 && time.Since(c.Time()) >= s.p.slowCall {
		return slow
	}
	return success
}

// probe is one half-open period: the probes it let in and how many succeeded.
type probe struct {
	admitted  atomic.Int64
	succeeded atomic.Int64
}

// state is one breaker's state. Reading it on the hot path is a few atomic loads; transitions
// take the mutex so that each is made, logged and counted once.
type state struct {
	name string
	p    *params
	log  zerolog.Logger
	base time.Time

	state       atomic.Int32
	openedAt    atomic.Int64 // nanoseconds since base
	consecutive atomic.Int64
	win         window
	probe       atomic.Pointer[probe] // non-nil while half-open

	mu sync.Mutex

	gauge, opened, rejected, probes *telemetry.Metric
}

func newState(name string, p *params, log zerolog.Logger, reg *telemetry.Registry) *state {
	s := &state{name: name, p: p, log: log, base: time.Now()}
	s.win.init(p.window)
	s.gauge = reg.Gauge(MetricsGroup, name, "state")
	s.opened = reg.Counter(MetricsGroup, name, "opened")
	s.rejected = reg.Counter(MetricsGroup, name, "rejected")
	s.probes = reg.Counter(MetricsGroup, name, "probes")
	s.mu.Lock()
	s.setGauge(Closed)
	s.mu.Unlock()
	return s
}

// Close leaves the metrics in place: they are kept for the life of the process.
func (s *state) Close() error { return nil }

func (s *state) now() int64 { return int64(time.Since(s.base)) }

// setGauge publishes st; called with mu held.
func (s *state) setGauge(st int32) { s.gauge.Add(int64(st) - s.gauge.Load()) }

// State reports the breaker's state (Closed, Open or HalfOpen).
func (s *state) State() int32 { return s.state.Load() }

func (s *state) record(o outcome) {
	now := s.now()
	s.win.add(now, o)
	if o == success {
		s.consecutive.Store(0)
		return
	}
	if o == slow {
		s.consecutive.Store(0)
	} else if n := s.consecutive.Add(1); s.p.consecutive > 0 && n >= s.p.consecutive {
		s.trip(Closed, "consecutive failures", n, now)
		return
	}
	if s.p.errorRatio == 0 && s.p.slowRatio == 0 {
		return
	}
	calls, fails, slows := s.win.sum(now)
	if calls < s.p.minRequests {
		return
	}
	if s.p.errorRatio > 0 && float64(fails) >= s.p.errorRatio*float64(calls) {
		s.trip(Closed, "error ratio", fails, now)
	} else if s.p.slowRatio > 0 && float64(slows) >= s.p.slowRatio*float64(calls) {
		s.trip(Closed, "slow-call ratio", slows, now)
	}
}

// trip opens the breaker if it is still in state from.
func (s *state) trip(from int32, reason string, n int64, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() != from {
		return
	}
	s.openedAt.Store(now)
	s.probe.Store(nil)
	s.state.Store(Open)
	s.setGauge(Open)
	s.opened.Add(1)
	s.log.Warn().Str("breaker", s.name).Str("from", stateNames[from]).Str("to", "open").
		Str("reason", reason).Int64("count", n).Dur("open_for", s.p.openFor).Msg("breaker opened")
}

// halfOpen moves an open breaker whose cool-down is over to half-open.
func (s *state) halfOpen(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() != Open || s.openedAt.Load()+int64(s.p.openFor) > now {
		return
	}
	s.probe.Store(&probe{})
	s.state.Store(HalfOpen)
	s.setGauge(HalfOpen)
	s.log.Info().Str("breaker", s.name).Str("from", "open").Str("to", "half-open").
		Int64("probes", s.p.probes).Msg("breaker half-open")
}

// probeDone counts a probe's outcome: a failure opens the breaker again, the last of the
// period's probes succeeding closes it, and a neutral outcome gives the probe's place back.
func (s *state) probeDone(pr *probe, o outcome) {
	if s.probe.Load() != pr {
		return // a period already decided
	}
	switch o {
	case neutral:
		pr.admitted.Add(-1)
	case failure, slow:
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.probe.Load() != pr {
			return
		}
		s.openedAt.Store(s.now())
		s.probe.Store(nil)
		s.state.Store(Open)
		s.setGauge(Open)
		s.opened.Add(1)
		s.log.Warn().Str("breaker", s.name).Str("from", "half-open").Str("to", "open").
			Str("reason", "probe failed").Dur("open_for", s.p.openFor).Msg("breaker opened")
	case success:
		if pr.succeeded.Add(1) < s.p.probes {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.probe.Load() != pr {
			return
		}
		s.probe.Store(nil)
		s.consecutive.Store(0)
		s.win.reset()
		s.state.Store(Closed)
		s.setGauge(Closed)
		s.log.Info().Str("breaker", s.name).Str("from", "half-open").Str("to", "closed").
			Msg("breaker closed")
	}
}

// buckets is how many slices the rolling window has: the ratios forget a tenth of the window
// at a time.
const buckets = 10

// window counts calls, failures and slow calls over the last window, in buckets that are
// recycled as time moves on. Concurrent updates use atomics only; a count that lands while its
// bucket is recycled may be lost, which a ratio over many calls does not notice.
type window struct {
	width int64 // one bucket, in nanoseconds
	b     [buckets]bucket
}

type bucket struct {
	epoch               atomic.Int64 // bucket number (time/width) the counts belong to, plus one
	calls, fails, slows atomic.Int64
}

func (w *window) init(d time.Duration) { w.width = int64(d) / buckets }

func (w *window) add(now int64, o outcome) {
	n := now / w.width
	b := &w.b[n%buckets]
	if e := b.epoch.Load(); e != n+1 {
		if b.epoch.CompareAndSwap(e, n+1) {
			b.calls.Store(0)
			b.fails.Store(0)
			b.slows.Store(0)
		}
	}
	b.calls.Add(1)
	switch o {
	case failure:
		b.fails.Add(1)
	case slow:
		b.slows.Add(1)
	}
}

func (w *window) sum(now int64) (calls, fails, slows int64) {
	n := now / w.width
	for i := range w.b {
		b := &w.b[i]
		if e := b.epoch.Load() - 1; e > n-buckets && e <= n {
			calls += b.calls.Load()
			fails += b.fails.Load()
			slows += b.slows.Load()
		}
	}
	return
}

func (w *window) reset() {
	for i := range w.b {
		w.b[i].epoch.Store(0)
	}
}
