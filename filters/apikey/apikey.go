// Package apikey implements the "apikey" filter: it identifies the caller by an API key sent in
// a header or a query parameter, looked up among the consumers' keys by its SHA-256 digest, and
// refuses requests without a known key with 401.
package apikey

import (
	"crypto/sha256"
	"errors"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Filter authenticates requests by API key. It is immutable after New and safe for concurrent
// use.
type Filter struct {
	// decisions count verdicts in weir_auth_decisions_total (README.md, Metrics).
	decisions telemetry.AuthDecisions
	consumers *filter.Consumers
	anonymous *filter.Consumer
	// spellings are the header's name and its variants with '_' for '-' (empty when keys are
	// not read from a header).
	spellings []string
	query     []byte // parameter name, nil when keys are not read from the query
	queryName string
	hide      bool
	challenge []byte
}

// maxKeyLen bounds the keys worth hashing. Consumers' keys are visible ASCII of at most 4 KiB
// (config/consumers.go), so a longer value cannot be one.
const maxKeyLen = 4096

// Reasons for the access log; static, so a refusal allocates nothing and no key is ever logged.
var (
	errMissing   = errors.New("apikey: no API key presented")
	errUnknown   = errors.New("apikey: unknown API key")
	errAmbiguous = errors.New("apikey: API key given more than once")
)

// hWWWAuthenticate is spelled as fasthttp stores it (names normalised), so SetCanonical finds it.
var hWWWAuthenticate = []byte("Www-Authenticate")

// OnRequest finds the key, hashes it and looks the digest up. Only the digest is compared with
// what the consumers hold (by a map lookup), so the time taken says nothing about stored keys.
//
// A key given twice (two header fields, the header under two spellings, or the parameter twice)
// is refused: the gateway and the upstream could read different ones.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	st := f.decide(c)
	f.decisions.Count(st == filter.Continue)
	return st
}

func (f *Filter) decide(c *filter.Ctx) filter.Status {
	var key []byte
	n := 0
	if f.spellings != nil {
		key, n = f.fromHeader(c)
	}
	if n == 0 && f.query != nil {
		key, n = f.fromQuery(c)
	}
	switch {
	case n > 1:
		return f.refuse(c, errAmbiguous)
	case len(key) == 0:
		if f.anonymous == nil {
			return f.refuse(c, errMissing)
		}
		c.SetConsumer(f.anonymous)
	case len(key) > maxKeyLen:
		return f.refuse(c, errUnknown)
	default:
		k := f.consumers.ByAPIKey(sha256.Sum256(key))
		if k == nil {
			return f.refuse(c, errUnknown)
		}
		c.SetConsumer(k)
	}
	if f.hide {
		f.hideKey(c)
	}
	return filter.Continue
}

// OnResponse does nothing.
func (f *Filter) OnResponse(*filter.Ctx) {}

func (f *Filter) refuse(c *filter.Ctx, err error) filter.Status {
	c.Response.Header.SetCanonical(hWWWAuthenticate, f.challenge)
	return c.Fail(401, err)
}

// fromHeader returns the first field holding the key and how many do. Every spelling of the
// name with '_' for '-' counts: CGI-style upstreams read X_API_Key as X-API-Key. PeekAll keeps
// its result in the header's own buffer, so this allocates nothing (a range over
// Header.All would, for the closure the compiler makes of the loop body).
func (f *Filter) fromHeader(c *filter.Ctx) ([]byte, int) {
	var key []byte
	n := 0
	h := &c.Request.Header
	for _, sp := range f.spellings {
		vals := h.PeekAll(sp)
		if n == 0 && len(vals) > 0 {
			key = vals[0]
		}
		n += len(vals)
	}
	return key, n
}

// fromQuery returns the first (percent-decoded) value of the parameter and how many there are.
func (f *Filter) fromQuery(c *filter.Ctx) ([]byte, int) {
	u := c.URI()
	n := CountParam(u.QueryString(), f.query)
	if n == 0 {
		return nil, 0
	}
	return u.QueryArgs().Peek(f.queryName), n
}

// hideKey removes every field and parameter the key may be in, so the upstream never sees it.
func (f *Filter) hideKey(c *filter.Ctx) {
	for _, sp := range f.spellings {
		c.Request.Header.Del(sp)
	}
	if f.query != nil {
		u := c.URI()
		if q, removed := RemoveParam(u.QueryString(), f.query); removed {
			// Set anew rather than through QueryArgs: with no argument left, fasthttp would
			// send the original query string.
			u.SetQueryStringBytes(q)
		}
	}
}

// CountParam counts the parameters of the raw query string q whose name, percent-decoded as
// fasthttp decodes it, is name.
func CountParam(q, name []byte) int {
	n := 0
	for len(q) > 0 {
		seg := q
		if i := indexByte(q, '&'); i >= 0 {
			seg, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		if i := indexByte(seg, '='); i >= 0 {
			seg = seg[:i]
		}
		if len(seg) > 0 && decodedEqual(seg, name) {
			n++
		}
	}
	return n
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// RemoveParam removes every parameter named name (compared after percent-decoding, '+' being a
// space, as fasthttp decodes them) from the raw query string q, in place, and reports whether
// it removed any. The other parameters keep their bytes exactly.
func RemoveParam(q, name []byte) ([]byte, bool) {
	w, removed := 0, false
	for r := 0; r <= len(q); {
		end := r
		for end < len(q) && q[end] != '&' {
			end++
		}
		seg := q[r:end]
		key := seg
		for i, b := range seg {
			if b == '=' {
				key = seg[:i]
				break
			}
		}
		if len(seg) > 0 && decodedEqual(key, name) {
			removed = true
		} else if len(seg) > 0 {
			if w > 0 {
				q[w] = '&'
				w++
			}
			w += copy(q[w:], seg)
		}
		r = end + 1
	}
	return q[:w], removed
}

// decodedEqual reports whether raw, percent-decoded the way fasthttp decodes query arguments
// ('+' is a space, an invalid escape stays as written), equals name.
func decodedEqual(raw, name []byte) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		switch {
		case b == '+':
			b = ' '
		case b == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]):
			b = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if j >= len(name) || name[j] != b {
			return false
		}
		j++
	}
	return j == len(name)
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func unhex(b byte) byte {
	switch {
	case b >= '0' && b <= '9':
		return b - '0'
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}
