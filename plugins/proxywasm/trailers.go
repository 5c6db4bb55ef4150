package proxywasm

import (
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/plugins/internal/anycase"
)

// Trailers are the fields after a chunked body. fasthttp keeps them in the message's header,
// each name announced (Trailer) and its values in a section of their own, and sends them
// after the body of a chunked message. The request's arrive with its body; the response's
// come from the proxy's stream once the plugin has read the body (readResponseBody). Only a
// chunked message carries trailers: for any other, the trailer maps are empty and writes to
// them are dropped.

// trailerFields is what the trailer functions need of a request or response header.
type trailerFields interface {
	PeekTrailerKeys() [][]byte
	PeekAll(key string) [][]byte
	PeekBytes(key []byte) []byte
	AddTrailerBytes(key []byte) error
	AddBytesKV(key, value []byte)
	DelBytes(key []byte)
}

// trailersOf returns the fields of trailer map kind, and whether the message is chunked.
func trailersOf(h *httpCtx, kind uint32) (trailerFields, bool) {
	if kind == mapRequestTrailers {
		return &h.c.Request.Header, h.reqChunked
	}
	return &h.c.Response.Header, h.respChunked
}

func isTrailerMap(kind uint32) bool { return kind == mapRequestTrailers || kind == mapResponseTrailer }

// visitTrailers calls fn for each trailer field of t.
func visitTrailers(t trailerFields, fn func(k, v []byte)) {
	for _, k := range t.PeekTrailerKeys() {
		for _, v := range t.PeekAll(string(k)) {
			fn(k, v)
		}
	}
}

// countTrailers is the number of trailer fields of a chunked message.
func countTrailers(t trailerFields, chunked bool) uint64 {
	if !chunked {
		return 0
	}
	n := uint64(0)
	visitTrailers(t, func(_, _ []byte) { n++ })
	return n
}

// endOfStream is a body callback's end_of_stream: 0 when trailers follow.
func endOfStream(trailers uint64) uint64 {
	if trailers > 0 {
		return 0
	}
	return 1
}

// trailerName returns the announced spelling of name, in any case, or nil.
func trailerName(t trailerFields, name []byte) []byte {
	for _, k := range t.PeekTrailerKeys() {
		if httpsyntax.EqualFold(k, name) {
			return k
		}
	}
	return nil
}

// peekTrailer returns the first value of trailer name, or nil.
func peekTrailer(t trailerFields, name []byte) []byte {
	if k := trailerName(t, name); k != nil {
		if vals := t.PeekAll(string(k)); len(vals) > 0 {
			return vals[0]
		}
	}
	return nil
}

// addTrailer adds (or with add false, replaces) a trailer field, announcing its name first.
// It reports false when the name cannot be a trailer: one fasthttp refuses (RFC 9110 section
// 6.5.1: framing, routing, authentication, content-type and the like), or the name of a field
// of the header section.
func addTrailer(t trailerFields, name, val []byte, add bool) bool {
	k := trailerName(t, name)
	switch {
	case k == nil:
		if headerHas(t, name) || t.AddTrailerBytes(name) != nil {
			return false
		}
		k = trailerName(t, name)
		if k == nil {
			return false
		}
		k = append([]byte(nil), k...)
	case !add:
		k = append([]byte(nil), k...)
		t.DelBytes(k)
	}
	t.AddBytesKV(k, val)
	return true
}

// headerHas reports whether the header section has a field name, in any case.
func headerHas(t trailerFields, name []byte) bool {
	if r, ok := t.(*fasthttp.ResponseHeader); ok {
		return anycase.Peek(r, name) != nil
	}
	return t.PeekBytes(name) != nil
}

// removeTrailer removes trailer name's values (its announcement stays: a name without values
// is not sent).
func removeTrailer(t trailerFields, name []byte) {
	if k := trailerName(t, name); k != nil {
		t.DelBytes(append([]byte(nil), k...))
	}
}

// clearTrailers removes every trailer value.
func clearTrailers(t trailerFields) {
	var names [][]byte
	for _, k := range t.PeekTrailerKeys() {
		names = append(names, append([]byte(nil), k...))
	}
	for _, k := range names {
		t.DelBytes(k)
	}
}

// writeTrailer adds or replaces a trailer field of a chunked message; for any other message it
// is dropped. Pseudo-headers, names that cannot be trailers and names of the header section
// answer BadArgument.
func writeTrailer(h *httpCtx, kind uint32, k, val []byte, add bool) uint64 {
	if k[0] == ':' {
		return statusBadArgument
	}
	if owned(k) {
		return statusOK // the gateway's, as in the header maps
	}
	t, chunked := trailersOf(h, kind)
	if !chunked {
		return statusOK
	}
	if !addTrailer(t, k, val, add) {
		return statusBadArgument
	}
	return statusOK
}
