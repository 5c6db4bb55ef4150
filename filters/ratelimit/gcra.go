package ratelimit

import "time"

// maxLimits bounds the limits one filter checks together, so a key's state is a fixed-size
// array and a decision's result fits on the stack.
const maxLimits = 4

// limit is one GCRA limit: rate requests per per, with burst requests allowed at once.
// Times are integer nanoseconds.
type limit struct {
	name  string
	rate  int64
	per   time.Duration
	burst int64

	// interval is the emission interval (per/rate): the time one request "costs".
	interval int64
	// tolerance is burst*interval: how far ahead of now a key's theoretical arrival time may
	// run. A fresh key can spend burst requests at once, then one per interval.
	tolerance int64
}

func newLimit(name string, rate, burst int64, per time.Duration) limit {
	iv := int64(per) / rate
	return limit{name: name, rate: rate, per: per, burst: burst, interval: iv, tolerance: burst * iv}
}

// result is what one limit says about one request.
type result struct {
	remaining int64 // requests the key may still send right now
	reset     int64 // ns until the key's full burst is available again
	retry     int64 // ns until a denied request would be allowed (0 when allowed)
}

// decision is the outcome of all of a filter's limits for one request.
type decision struct {
	allowed bool
	n       int
	res     [maxLimits]result
}

// retryAfter is how long a denied client must wait: the longest wait of the limits that
// denied it.
func (d *decision) retryAfter() int64 {
	var m int64
	for i := 0; i < d.n; i++ {
		m = max(m, d.res[i].retry)
	}
	return m
}

// decide runs GCRA for every limit on the key's theoretical arrival times tats (0: never seen)
// at time now. A request is allowed only when every limit allows it, and only then are the
// new arrival times written back to tats: a denied request consumes nothing, so a client
// hammering at one limit does not also drain its other limits.
//
// GCRA keeps one timestamp per key and limit, not a counter per window, so there is no window
// edge at which two bursts could be spent back to back.
func decide(limits []limit, tats *[maxLimits]int64, now int64) decision {
	d := decision{allowed: true, n: len(limits)}
	var next [maxLimits]int64
	for i := range limits {
		l := &limits[i]
		tat := max(tats[i], now)
		nt := tat + l.interval
		allowAt := nt - l.tolerance
		if now < allowAt {
			d.allowed = false
			d.res[i] = result{remaining: 0, reset: tat - now, retry: allowAt - now}
			continue
		}
		next[i] = nt
		d.res[i] = result{remaining: (now - allowAt) / l.interval, reset: nt - now}
	}
	if d.allowed {
		copy(tats[:len(limits)], next[:len(limits)])
		return d
	}
	// Denied: report the state as it stands, nothing consumed.
	for i := range limits {
		if d.res[i].retry != 0 {
			continue
		}
		l := &limits[i]
		tat := max(tats[i], now)
		d.res[i] = result{remaining: (now + l.tolerance - tat) / l.interval, reset: tat - now}
	}
	return d
}
