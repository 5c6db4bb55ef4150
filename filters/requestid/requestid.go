// Package requestid implements the "request-id" filter: every request leaves the gateway with an
// id in a header (X-Request-Id by default), either the well-formed one the client sent or a new
// 128-bit one, and the response carries the same id back so a client can quote it.
package requestid

import (
	"encoding/hex"
	"sync/atomic"

	"github.com/weir-gateway/weir/core/filter"
)

// Filter propagates or generates request ids. It is immutable after New, apart from the atomic
// counter of its generator, and safe for concurrent use.
type Filter struct {
	header        []byte
	headerStr     string
	trustIncoming bool
	response      bool
	maxLength     int
	uuid          bool
	gen           generator
}

// OnRequest keeps a trusted, well-formed incoming id or replaces it with a new one.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	h := &c.Request.Header
	if f.trustIncoming {
		// Several copies of the header are ambiguous (which one would the upstream log?), so
		// only a single, well-formed value is kept.
		if all := h.PeekAll(f.headerStr); len(all) == 1 && f.wellFormed(all[0]) {
			return filter.Continue
		}
	}
	var buf [uuidLen]byte
	id := f.gen.next(&buf)
	// Delete first: fasthttp's Set replaces only the first of several values.
	h.DelBytes(f.header)
	h.SetBytesKV(f.header, id)
	return filter.Continue
}

// OnResponse copies the id the upstream was sent onto the response. It reads the request header
// back rather than keeping a copy, which costs no memory per request; a later filter that changed
// the request header therefore changes the id shown to the client too, which keeps the client's
// and the upstream's view the same.
func (f *Filter) OnResponse(c *filter.Ctx) {
	if !f.response {
		return
	}
	if id := c.Request.Header.PeekBytes(f.header); len(id) > 0 {
		c.Response.Header.DelBytes(f.header)
		c.Response.Header.SetBytesKV(f.header, id)
	}
}

// wellFormed reports whether an incoming id is 1 to maxLength bytes of visible ASCII: nothing
// that could split a log line, hide in a terminal or smuggle a separator.
func (f *Filter) wellFormed(id []byte) bool {
	if len(id) == 0 || len(id) > f.maxLength {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

const (
	hexLen  = 32
	uuidLen = 36
)

// generator makes 128-bit ids without locks or allocation.
//
// An id is hi || lo. hi is a 64-bit random value drawn from crypto/rand when the filter is built.
// lo is a bijective mix of a per-filter atomic counter (itself started at a random value) into 62
// bits; the 2 bits left over are fixed (the UUID variant) or random (hex format). UUIDs also fix
// the 4 version bits of hi.
//
// Why the ids are unique: within one filter, each call takes a distinct counter value, the mix is
// a bijection on 62 bits, so lo values cannot repeat before 2^62 ids (about 14,000 years at ten
// million ids a second). Across filters (routes, reloads, processes, machines) the random hi
// values differ except with probability about k²/2^61 for k filters ever built (60 random bits
// with the UUID version fixed), and even then the two counters, each started at a random point of
// a 2^62 cycle, would have to reach the same values. The mixing keeps ids from revealing request
// counts at a glance; it is not meant to make them unguessable.
type generator struct {
	hi      uint64
	loFixed uint64 // the top 2 bits of lo
	counter atomic.Uint64
	uuid    bool
}

const mask62 = 1<<62 - 1

func (g *generator) init(hi, lo uint64, uuid bool) {
	g.uuid = uuid
	g.hi = hi
	g.loFixed = lo &^ mask62
	if uuid {
		g.hi = hi&^(0xf<<12) | 0x4<<12 // version 4 in bits 12-15 (byte 6, high nibble)
		g.loFixed = 0x2 << 62          // variant 10 in the top bits of byte 8
	}
	g.counter.Store(lo & mask62)
}

// mix62 is a bijection on [0, 2^62): every step (xor with a right shift of itself, multiply by
// an odd constant modulo 2^62) can be undone, so distinct inputs give distinct outputs.
func mix62(x uint64) uint64 {
	x &= mask62
	x ^= x >> 31
	x = (x * 0x7fb5d329728ea185) & mask62
	x ^= x >> 27
	x = (x * 0x81dadef4bc2dd44d) & mask62
	x ^= x >> 33
	return x
}

// next writes a new id into buf and returns the used part of it.
func (g *generator) next(buf *[uuidLen]byte) []byte {
	lo := g.loFixed | mix62(g.counter.Add(1))
	var raw [16]byte
	for i := 0; i < 8; i++ {
		raw[i] = byte(g.hi >> (56 - 8*i))
		raw[8+i] = byte(lo >> (56 - 8*i))
	}
	if !g.uuid {
		hex.Encode(buf[:hexLen], raw[:])
		return buf[:hexLen]
	}
	// 8-4-4-4-12 groups of hex digits.
	hex.Encode(buf[0:8], raw[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], raw[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], raw[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], raw[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], raw[10:16])
	return buf[:uuidLen]
}
