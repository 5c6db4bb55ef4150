// Package ratelimit implements the "ratelimit" filter: GCRA limits per client address,
// header, consumer, token claim or route, several at once, kept in memory (local mode) or in
// Redis so that several gateways share one limit (redis mode). Denied requests get 429 with
// Retry-After; every answer carries the IETF RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers-10).
package ratelimit

import (
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Key kinds; hashed with the key's bytes so that key spaces never overlap.
const (
	kindIP       byte = 'i'
	kindRoute    byte = 'r'
	kindConsumer byte = 'c'
	kindHeader   byte = 'h'
	kindClaim    byte = 'j'
)

var (
	errLimited     = errors.New("ratelimit: limit exceeded")
	errUnavailable = errors.New("ratelimit: redis unreachable (fail: closed)")

	hdrPolicy     = []byte("RateLimit-Policy")
	hdrRateLimit  = []byte("RateLimit")
	hdrRetryAfter = []byte("Retry-After")
)

// Filter limits the requests of its route. It is immutable after New, except for its
// counters, and safe for concurrent use; the limiter state lives in a store shared through
// filter.Env.Shared.
type Filter struct {
	kind   byte
	header []byte
	claim  string

	limits   []limit
	policy   []byte   // the RateLimit-Policy value, built once
	names    [][]byte // each limit's name as a structured-field string
	headers  bool
	failOpen bool
	slot     int

	local   *localStore
	remote  *redisStore
	release func() error

	allowed atomic.Int64
	limited atomic.Int64
	failed  atomic.Int64 // requests decided by the fail policy
	// The same verdicts in weir_ratelimit_decisions_total (README.md, Metrics).
	mAllowed, mLimited, mError telemetry.Counter
}

// state carries an allowed request's decision to the response phase, where the RateLimit
// field is written (the upstream's answer replaces the response). Pooled: no allocation.
type state struct{ d decision }

var states = sync.Pool{New: func() any { return new(state) }}

// key returns the request's key: its kind and bytes. A missing key (no consumer, an absent
// or empty header or claim) falls back to the client address, so a client cannot escape its
// limit by leaving a header out.
func (f *Filter) key(c *filter.Ctx, buf *[16]byte) (byte, []byte, string) {
	switch f.kind {
	case kindRoute:
		return kindRoute, nil, ""
	case kindHeader:
		if v := c.Request.Header.PeekBytes(f.header); len(v) > 0 {
			return kindHeader, v, ""
		}
	case kindConsumer:
		if k := c.Consumer(); k != nil {
			return kindConsumer, nil, k.Name
		}
	case kindClaim:
		if cl := c.Claims(); cl != nil {
			if v, ok := cl.Claim(f.claim); ok && v != "" {
				return kindClaim, nil, v
			}
		}
	}
	ip := c.ClientIP()
	if !ip.IsValid() {
		// Outside the engine (a bare Ctx): the peer's address.
		ip, _ = netip.AddrFromSlice(c.RemoteIP())
	}
	*buf = ip.Unmap().As16()
	return kindIP, buf[:], ""
}

// OnRequest decides the request. An allowed request continues; its RateLimit field is
// written in the response phase. A denied one gets 429 at once and consumes nothing.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	var buf [16]byte
	kind, b, s := f.key(c, &buf)
	var d decision
	if f.local != nil {
		d = f.local.take(f.local.hash(kind, b, s))
	} else {
		var err error
		d, err = f.remote.take(kind, b, s)
		if err != nil {
			f.failed.Add(1)
			f.mError.Inc()
			if f.failOpen {
				return filter.Continue // the response phase sends the policy only
			}
			st := c.Fail(fasthttpServiceUnavailable, errUnavailable)
			f.writePolicy(c)
			return st
		}
	}
	if !d.allowed {
		f.limited.Add(1)
		f.mLimited.Inc()
		st := c.Fail(fasthttpTooManyRequests, errLimited)
		h := &c.Response.Header
		var rb [20]byte
		h.SetBytesKV(hdrRetryAfter, strconv.AppendInt(rb[:0], ceilSeconds(d.retryAfter()), 10))
		if f.headers {
			f.writePolicy(c)
			f.writeRateLimit(c, &d)
		}
		return st
	}
	f.allowed.Add(1)
	f.mAllowed.Inc()
	if f.headers {
		st := states.Get().(*state)
		st.d = d
		*c.Slot(f.slot) = st
	}
	return filter.Continue
}

// OnResponse writes RateLimit-Policy and RateLimit on the answer, whoever wrote it (the
// upstream or a later filter), replacing any the upstream sent: the gateway's limit is the
// one the client meets first.
func (f *Filter) OnResponse(c *filter.Ctx) {
	if !f.headers {
		return
	}
	f.writePolicy(c)
	slot := c.Slot(f.slot)
	st, _ := (*slot).(*state)
	if st == nil {
		// Redis was unreachable and failed open: no current state to report.
		c.Response.Header.DelBytes(hdrRateLimit)
		return
	}
	*slot = nil
	f.writeRateLimit(c, &st.d)
	states.Put(st)
}

const (
	fasthttpTooManyRequests    = 429
	fasthttpServiceUnavailable = 503
)

func (f *Filter) writePolicy(c *filter.Ctx) {
	if f.headers {
		c.Response.Header.SetBytesKV(hdrPolicy, f.policy)
	}
}

// writeRateLimit writes one item per limit: its remaining requests and the seconds until its
// full quota is back.
func (f *Filter) writeRateLimit(c *filter.Ctx, d *decision) {
	var buf [64 * maxLimits]byte
	c.Response.Header.SetBytesKV(hdrRateLimit, f.appendRateLimit(buf[:0], d))
}

func (f *Filter) appendRateLimit(b []byte, d *decision) []byte {
	for i := 0; i < d.n; i++ {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, f.names[i]...)
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, max(d.res[i].remaining, 0), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(d.res[i].reset), 10)
	}
	return b
}

// ceilSeconds rounds a positive wait up to whole seconds, so a client that waits as told is
// never early; Retry-After of a denied request is at least 1.
func ceilSeconds(ns int64) int64 {
	if ns <= 0 {
		return 0
	}
	return (ns + int64(time.Second) - 1) / int64(time.Second)
}

// Close releases the limiter state; it is closed with the last snapshot using it.
func (f *Filter) Close() error { return f.release() }

// Stats are the filter's counters since its snapshot was built.
type Stats struct {
	Allowed, Limited, Failed int64
	// Keys held by the local store, and keys dropped from a full store while still limiting.
	Keys, Evicted int64
	// RedisErrors counts failed Redis decisions, Transitions the changes between reachable
	// and unreachable; both since the store was created.
	RedisErrors, Transitions int64
}

// Stats returns the filter's counters.
func (f *Filter) Stats() Stats {
	s := Stats{Allowed: f.allowed.Load(), Limited: f.limited.Load(), Failed: f.failed.Load()}
	if f.local != nil {
		s.Keys, s.Evicted = int64(f.local.keys()), f.local.evicted.Load()
	}
	if f.remote != nil {
		s.RedisErrors, s.Transitions = f.remote.errs.Load(), f.remote.transitions.Load()
	}
	return s
}
