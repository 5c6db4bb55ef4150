// Package rewrite implements the "rewrite" filter: it changes the path of the request sent
// upstream by stripping a prefix, replacing the whole path or applying a regular expression, and
// can then add a prefix. The query string is kept as sent.
//
// The filter works on the path as received (still percent-encoded, dot segments unresolved): what
// it matches is exactly what the upstream would otherwise have been sent, and decoding first
// would let an encoded "?" or "/" in the path turn into a real one.
package rewrite

import (
	"bytes"
	"regexp"

	"github.com/weir-gateway/weir/core/filter"
)

type mode uint8

const (
	modeNone mode = iota // add_prefix only
	modeStrip
	modePath
	modeRegex
)

// Filter rewrites request paths. It is immutable after New and safe for concurrent use.
type Filter struct {
	mode     mode
	strip    []byte // without trailing slash
	path     []byte
	re       *regexp.Regexp
	template []byte
	add      []byte // without trailing slash
}

// scratchLen sizes the stack buffer a new path is built in. Longer paths still work; only they
// allocate.
const scratchLen = 512

// OnRequest rewrites the path. Paths that strip_prefix or regex do not match keep their path
// (add_prefix still applies). The new path is assembled in a stack buffer, because the old one
// lives in the URI's own buffer that SetPathBytes overwrites.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	uri := c.URI()
	old := uri.PathOriginal()
	var scratch [scratchLen]byte
	out := append(scratch[:0], f.add...)
	switch f.mode {
	case modeNone:
		out = append(out, old...)
	case modeStrip:
		rest := old
		if r, ok := stripSegmentPrefix(old, f.strip); ok {
			rest = r
		}
		out = append(out, rest...)
	case modePath:
		out = append(out, f.path...)
	case modeRegex:
		if !f.re.Match(old) {
			out = append(out, old...)
			break
		}
		// ReplaceAll allocates its result: regular expression rewrites are the one mode that
		// allocates per request, and only for paths that match.
		n := len(out)
		out = append(out, f.re.ReplaceAll(old, f.template)...)
		if len(out) > n && out[n] != '/' {
			// A template such as "$1" may expand to a relative path; paths are absolute.
			out = append(out, 0)
			copy(out[n+1:], out[n:])
			out[n] = '/'
		}
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	if !bytes.Equal(out, old) {
		uri.SetPathBytes(out)
	}
	return filter.Continue
}

// OnResponse does nothing: a rewrite only concerns the request.
func (f *Filter) OnResponse(*filter.Ctx) {}

// stripSegmentPrefix removes prefix from path when it ends at a segment boundary, so "/api"
// strips "/api" and "/api/users" but not "/apiary".
func stripSegmentPrefix(path, prefix []byte) ([]byte, bool) {
	if !bytes.HasPrefix(path, prefix) {
		return nil, false
	}
	rest := path[len(prefix):]
	if len(rest) > 0 && rest[0] != '/' {
		return nil, false
	}
	return rest, true
}
