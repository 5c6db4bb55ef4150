package compress

import (
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// coding is a content coding the filter can produce; none means the identity (no coding).
type coding uint8

const (
	none coding = iota
	gzipCoding
	brCoding
	zstdCoding
	numCodings
)

// codingNames are the Content-Encoding tokens, indexed by coding.
var codingNames = [numCodings]string{"", "gzip", "br", "zstd"}

// accepted is what an Accept-Encoding list says about each coding: its q-value in thousandths
// (0 to 1000), or -1 when the list does not name it.
type accepted struct {
	q        [numCodings]int16
	star     int16 // "*": any coding not named
	identity int16
}

func (a *accepted) reset() {
	for i := range a.q {
		a.q[i] = -1
	}
	a.star, a.identity = -1, -1
}

// add reads one Accept-Encoding field value (RFC 9110 section 12.5.3). Names compare without
// case; an element with a malformed weight or a parameter other than q is ignored, as is a
// name given a second time (the first one counts). It allocates nothing.
func (a *accepted) add(list []byte) {
	for len(list) > 0 {
		var elem []byte
		elem, list = httpsyntax.NextElement(list)
		if len(elem) == 0 {
			continue
		}
		name, q, ok := parseElement(elem)
		if !ok {
			continue
		}
		var slot *int16
		switch {
		case httpsyntax.EqualFold(name, "gzip"), httpsyntax.EqualFold(name, "x-gzip"):
			// x-gzip is gzip's old name; RFC 9110 section 8.4.1.3 makes them equivalent.
			slot = &a.q[gzipCoding]
		case httpsyntax.EqualFold(name, "br"):
			slot = &a.q[brCoding]
		case httpsyntax.EqualFold(name, "zstd"):
			slot = &a.q[zstdCoding]
		case httpsyntax.EqualFold(name, "identity"):
			slot = &a.identity
		case len(name) == 1 && name[0] == '*':
			slot = &a.star
		default:
			continue // deflate, compress and unknown codings: never produced
		}
		if *slot < 0 {
			*slot = q
		}
	}
}

// parseElement splits "name;q=0.5" into the coding name and its weight (1000 when absent).
func parseElement(e []byte) (name []byte, q int16, ok bool) {
	q = 1000
	i := 0
	for i < len(e) && e[i] != ';' {
		i++
	}
	name = httpsyntax.TrimOWS(e[:i])
	if !httpsyntax.IsToken(name) {
		return nil, 0, false
	}
	rest := e[i:]
	for len(rest) > 0 {
		rest = rest[1:] // the ';'
		j := 0
		for j < len(rest) && rest[j] != ';' {
			j++
		}
		p := httpsyntax.TrimOWS(rest[:j])
		rest = rest[j:]
		if len(p) == 0 {
			continue
		}
		if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') {
			return nil, 0, false // codings take no parameter but the weight
		}
		v := httpsyntax.TrimOWS(p[1:])
		if len(v) == 0 || v[0] != '=' {
			return nil, 0, false
		}
		if q, ok = parseQ(httpsyntax.TrimOWS(v[1:])); !ok {
			return nil, 0, false
		}
	}
	return name, q, true
}

// parseQ parses a qvalue: "0" to "1" with at most three decimals (RFC 9110 section 12.4.2),
// in thousandths.
func parseQ(v []byte) (int16, bool) {
	if len(v) == 0 || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return 0, false
	}
	q := int16(v[0]-'0') * 1000
	if len(v) == 1 {
		return q, true
	}
	if v[1] != '.' {
		return 0, false
	}
	scale := int16(100)
	for _, c := range v[2:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		q += int16(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0, false // "1.5"
	}
	return q, true
}

// choose picks the coding to send: the acceptable one (q > 0, named or covered by "*") with
// the highest weight, ties going to the server's order prefs. identity wins only when the
// client names it with a weight above every acceptable coding's.
func (a *accepted) choose(prefs []coding) coding {
	best, bestQ := none, int16(0)
	for _, c := range prefs {
		q := a.q[c]
		if q < 0 {
			q = a.star
		}
		if q > bestQ {
			best, bestQ = c, q
		}
	}
	if best != none && a.identity > bestQ {
		return none
	}
	return best
}
