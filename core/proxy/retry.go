package proxy

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// RetryOptions configures retries. A retry happens only when it is safe: the attempt failed to
// connect (nothing was sent), or the request is idempotent and has no body, so resending it
// cannot repeat a side effect and no body that reached a backend is ever sent twice.
type RetryOptions struct {
	// Attempts is the number of retries after the first try; 0 disables retries.
	Attempts int
	// BackoffBase is the first wait before a retry; each further retry doubles it, up to
	// BackoffMax. The wait is drawn uniformly from [0, backoff] ("full jitter"), so retries from
	// many clients do not arrive in waves.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// BudgetRatio caps retries at this fraction of requests over the last 10 s (0.2: at most one
	// retry per five requests), plus MinRetriesPerSecond so that a quiet upstream can still retry.
	// A negative ratio disables the budget.
	BudgetRatio         float64
	MinRetriesPerSecond int
	// RetryOn5xx also retries idempotent, body-less requests answered 502, 503 or 504.
	RetryOn5xx bool
}

// Retry defaults: one retry, Envoy's 25 ms base backoff, a budget of 20 % (Finagle's and
// Linkerd's) with a floor of 3 retries a second.
const (
	DefaultRetryAttempts       = 1
	DefaultBackoffBase         = 25 * time.Millisecond
	DefaultBackoffMax          = 250 * time.Millisecond
	DefaultBudgetRatio         = 0.2
	DefaultMinRetriesPerSecond = 3
)

// budgetWindow is the span over which retries are compared with requests, in one-second slots.
const budgetWindow = 10

// budget counts requests and retries in one-second slots over the last budgetWindow seconds.
// Every operation is a few atomic adds on the slot of the current second; a slot is recycled
// with a compare-and-swap on its epoch when its second comes round again.
type budget struct {
	slots [budgetWindow]budgetSlot
}

type budgetSlot struct {
	sec      atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

func (b *budget) slot(now int64) *budgetSlot {
	s := &b.slots[now%budgetWindow]
	if sec := s.sec.Load(); sec != now {
		if s.sec.CompareAndSwap(sec, now) {
			s.requests.Store(0)
			s.retries.Store(0)
		}
	}
	return s
}

// request counts one client request.
func (b *budget) request(now int64) { b.slot(now).requests.Add(1) }

// withdraw takes one retry from the budget and reports whether it was allowed.
func (b *budget) withdraw(now int64, ratio float64, minPerSec int) bool {
	if ratio < 0 {
		return true
	}
	var reqs, retries int64
	for i := range b.slots {
		s := &b.slots[i]
		if sec := s.sec.Load(); sec > now-budgetWindow && sec <= now {
			reqs += s.requests.Load()
			retries += s.retries.Load()
		}
	}
	if float64(retries) >= ratio*float64(reqs)+float64(minPerSec*budgetWindow) {
		return false
	}
	b.slot(now).retries.Add(1)
	return true
}

// backoff returns the wait before retry n (1-based): full jitter over base × 2^(n-1), capped.
func backoff(n int, base, maxWait time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	if maxWait > 0 && d > maxWait {
		d = maxWait
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// retryAfter parses a Retry-After value (delay-seconds or an HTTP date) into a wait; ok is false
// when the header is absent or malformed.
func retryAfter(v []byte, now time.Time) (time.Duration, bool) {
	if len(v) == 0 {
		return 0, false
	}
	n := 0
	digits := true
	for _, c := range v {
		if c < '0' || c > '9' {
			digits = false
			break
		}
		if n > 1<<20 {
			return time.Duration(1<<20) * time.Second, true
		}
		n = n*10 + int(c-'0')
	}
	if digits {
		return time.Duration(n) * time.Second, true
	}
	t, err := fasthttp.ParseHTTPDate(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// idempotent reports whether method may be repeated without repeating a side effect
// (RFC 9110 §9.2.2).
func idempotent(h *fasthttp.RequestHeader) bool {
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsPut() || h.IsDelete() || h.IsTrace()
}

const hRetryAfter = "Retry-After"
