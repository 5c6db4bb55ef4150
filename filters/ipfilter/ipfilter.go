// Package ipfilter implements the "ipfilter" filter: it allows or denies a request by the
// client's address, as the edge resolved it through server.trusted_proxies (Ctx.ClientIP), never
// by a raw X-Forwarded-For header, which any client can write. Deny lists win over allow lists;
// with an allow list, every address not on it is denied.
package ipfilter

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Errors recorded for the access log; the client only ever sees a 403 JSON body.
var (
	errDenied     = errors.New("ipfilter: client address is denied")
	errNotAllowed = errors.New("ipfilter: client address is not allowed")
	errNoClient   = errors.New("ipfilter: client address unknown")
)

// Filter decides on the client address. It is immutable after New and safe for concurrent use.
type Filter struct {
	// decisions count verdicts in weir_auth_decisions_total (README.md, Metrics).
	decisions   telemetry.AuthDecisions
	allow, deny set
	hasAllow    bool
}

// OnRequest answers 403 for a denied client and continues for the others.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	st := f.decide(c)
	f.decisions.Count(st == filter.Continue)
	return st
}

func (f *Filter) decide(c *filter.Ctx) filter.Status {
	a := c.ClientIP()
	if !a.IsValid() {
		// Without an address no list can be applied; failing open would let a request through
		// that the configuration meant to stop.
		return c.Fail(403, errNoClient)
	}
	a = a.Unmap().WithZone("")
	if f.deny.contains(a) {
		return c.Fail(403, errDenied)
	}
	if f.hasAllow && !f.allow.contains(a) {
		return c.Fail(403, errNotAllowed)
	}
	return filter.Continue
}

// OnResponse does nothing.
func (f *Filter) OnResponse(*filter.Ctx) {}

// set is a list of prefixes as sorted, disjoint, non-adjacent ranges of addresses, IPv4 and
// IPv6 apart, so a lookup is one binary search and never allocates.
type set struct {
	v4 []r4
	v6 []r6
}

type r4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as a number.
type u128 struct{ hi, lo uint64 }

type r6 struct{ lo, hi u128 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) next() (u128, bool) {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, false
		}
	}
	return u128{hi, lo}, true
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func v6(a netip.Addr) u128 {
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

// newSet turns prefixes (already masked and unmapped by ParsePrefix) into merged ranges.
func newSet(ps []netip.Prefix) set {
	var s set
	for _, p := range ps {
		if p.Addr().Is4() {
			lo := v4(p.Addr())
			hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
			s.v4 = append(s.v4, r4{lo, hi})
			continue
		}
		lo := v6(p.Addr())
		hi := lo
		host := 128 - p.Bits() // bits set in hi
		switch {
		case host >= 64:
			hi.lo = ^uint64(0)
			if host == 128 {
				hi.hi = ^uint64(0)
			} else {
				hi.hi |= uint64(1)<<(host-64) - 1
			}
		case host > 0:
			hi.lo |= uint64(1)<<host - 1
		}
		s.v6 = append(s.v6, r6{lo, hi})
	}
	slices.SortFunc(s.v4, func(a, b r4) int { return cmp.Compare(a.lo, b.lo) })
	slices.SortFunc(s.v6, func(a, b r6) int { return a.lo.cmp(b.lo) })
	s.v4 = merge4(s.v4)
	s.v6 = merge6(s.v6)
	return s
}

func merge4(rs []r4) []r4 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].hi == ^uint32(0) || r.lo <= out[n-1].hi+1) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

func merge6(rs []r6) []r6 {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			nx, ok := last.hi.next()
			if !ok || r.lo.cmp(nx) <= 0 {
				if r.hi.cmp(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// contains reports whether a (unmapped, without zone) is in the set.
func (s *set) contains(a netip.Addr) bool {
	if a.Is4() {
		x := v4(a)
		rs := s.v4
		// The last range starting at or before x is the only one that can hold it.
		lo, hi := 0, len(rs)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if rs[m].lo <= x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo > 0 && x <= rs[lo-1].hi
	}
	x := v6(a)
	rs := s.v6
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].lo.cmp(x) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && x.cmp(rs[lo-1].hi) <= 0
}
