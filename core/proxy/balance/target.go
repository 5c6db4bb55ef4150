package balance

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// decay is the time constant of the latency estimate: a sample's influence falls to 1/e after
// this long. Ten seconds follows Linkerd's default; it is long enough that one slow response does
// not dominate and short enough that a recovered target wins traffic back within a minute.
const decay = 10 * time.Second

// maxEstimate caps the latency estimate. A failure counts as twice the estimate, so without a
// cap a target failing more often than decay can forgive doubles it without end, until it
// overflows a Duration. p2c only compares estimates; 10 s already ranks a target last.
const maxEstimate = float64(10 * time.Second)

// epoch anchors the monotonic clock readings stored in Target as plain int64 nanoseconds,
// which fit an atomic word where a time.Time would not.
var epoch = time.Now()

// nanotime is the monotonic time since epoch, never 0 (0 marks "no sample yet").
func nanotime() int64 {
	return max(int64(time.Since(epoch)), 1)
}

// Target is one backend's live state, shared by balancers and health checking. It outlives
// config reloads: core/proxy's Pool hands out the same *Target for an address that stays in the
// upstream, so its load, latency estimate and health carry over to the new snapshot.
//
// Every method is safe for concurrent use.
type Target struct {
	// Addr is the backend address as written in the config (host:port); it never changes.
	Addr string

	weight atomic.Int32
	down   atomic.Bool // inverted so that the zero value, and a new target, is available

	// The counters below are written by every request; the padding keeps those writes from
	// invalidating the cache line that Pick reads Addr, weight and down from.
	_ [64]byte

	inflight atomic.Int64
	// ewma is the peak-EWMA latency in nanoseconds (float64 bits) as of stamp (nanotime of the
	// last sample, 0 before the first). Readers decay it to the present without writing, so
	// Pick never contends with End; writers take mu so that concurrent samples compose exactly.
	ewma  atomic.Uint64
	stamp atomic.Int64
	mu    sync.Mutex
}

// NewTarget returns an available target with no load and no latency sample. Weight is relative
// to the other targets of the same upstream; New rejects values outside 1..MaxWeight.
func NewTarget(addr string, weight int) *Target {
	t := &Target{Addr: addr}
	t.weight.Store(int32(min(max(weight, math.MinInt32), math.MaxInt32)))
	return t
}

// Weight is the target's configured weight. Balancers read it once, when they are built, so a
// reload that changes it affects only the new snapshot's balancer.
func (t *Target) Weight() int { return int(t.weight.Load()) }

// SetWeight changes the weight that balancers built from now on will read; balancers already
// built keep the weight they read. Callers validate the range (New rejects bad weights).
func (t *Target) SetWeight(w int) {
	t.weight.Store(int32(min(max(w, math.MinInt32), math.MaxInt32)))
}

// Available reports whether balancers may pick the target.
func (t *Target) Available() bool { return !t.down.Load() }

// SetAvailable marks the target up or down; health checkers call it, balancers obey it on their
// next Pick.
func (t *Target) SetAvailable(ok bool) { t.down.Store(!ok) }

// InFlight is the number of requests begun and not yet ended.
func (t *Target) InFlight() int64 { return t.inflight.Load() }

// EWMA is the current latency estimate, decayed to now; 0 before the first sample.
func (t *Target) EWMA() time.Duration {
	v, ok := t.latency(nanotime())
	if !ok {
		return 0
	}
	return time.Duration(v)
}

// Begin counts a request as in flight and returns its start time for End. Every Begin must be
// matched by exactly one End, or the target looks busier than it is for the rest of its life.
func (t *Target) Begin() time.Time { return t.BeginAt(time.Now()) }

// BeginAt is Begin for a caller that has just read the clock: now is returned as the start.
func (t *Target) BeginAt(now time.Time) time.Time {
	t.inflight.Add(1)
	return now
}

// End finishes a request started with Begin and feeds its latency to the estimate. A failed
// request (connection error, timeout, 5xx the caller counts as failure) is recorded as at least
// twice the current estimate: a target that fails fast must not look fast to p2c.
// It returns the request's latency, for the caller's own metrics.
func (t *Target) End(start time.Time, failed bool) time.Duration {
	t.inflight.Add(-1)
	now := time.Now()
	d := now.Sub(start)
	t.observe(float64(d), failed, max(int64(now.Sub(epoch)), 1))
	return d
}

// latency returns the estimate decayed from its stamp to now, and false before any sample.
// Decaying towards zero while no response arrives is what lets a target that was penalised for a
// slow peak be tried again later (Finagle's and Linkerd's peak EWMA behave the same way).
func (t *Target) latency(now int64) (float64, bool) {
	v, _, ok := t.decayed(now)
	return v, ok
}

// decayed is latency with the decay factor it applied (1 when no time passed since the stamp).
func (t *Target) decayed(now int64) (v, w float64, ok bool) {
	stamp := t.stamp.Load()
	if stamp == 0 {
		return 0, 1, false
	}
	w = 1
	if dt := now - stamp; dt > 0 {
		w = math.Exp(-float64(dt) / float64(decay))
	}
	return math.Float64frombits(t.ewma.Load()) * w, w, true
}

// observe folds one latency sample (ns) into the peak EWMA: a sample above the decayed estimate
// replaces it at once (react to a slowdown immediately), a lower one is blended in with a weight
// that grows with the time since the previous sample (recover gradually).
func (t *Target) observe(sample float64, failed bool, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, w, ok := t.decayed(now)
	if failed {
		sample = max(sample, 2*cur)
	}
	sample = min(sample, maxEstimate)
	next := sample
	if ok && sample <= cur {
		// cur already equals stored*w; adding the sample's share completes stored*w + s*(1-w).
		next = cur + sample*(1-w)
	}
	// Value before stamp: a reader that sees the new value with the old stamp over-decays it for
	// an instant, which errs towards trying the target rather than shunning it.
	t.ewma.Store(math.Float64bits(next))
	t.stamp.Store(now)
}
