// Package anycase finds, replaces and removes the fields of a response by name in any ASCII
// case. The proxy reads an upstream's response without normalizing field names (they travel
// on in the case they were sent), while field names are case-insensitive (RFC 9110 section
// 5.1) and both plugin ABIs promise guests lookups by any spelling. Both ABIs use this one
// copy.
package anycase

import (
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// spellings returns the distinct spellings of name among h's fields, its header section and
// its trailer section. The returned names are copies, so the caller may change h.
func spellings(h *fasthttp.ResponseHeader, name []byte) [][]byte {
	var out [][]byte
	add := func(k []byte) {
		if !httpsyntax.EqualFold(k, name) {
			return
		}
		for _, s := range out {
			if string(s) == string(k) {
				return
			}
		}
		out = append(out, append([]byte(nil), k...))
	}
	for k := range h.All() {
		add(k)
	}
	for k := range h.Trailers() {
		add(k)
	}
	return out
}

// Values appends the values of every field of h named name, in any case, to dst, trailer
// values after header values of the same spelling.
func Values(h *fasthttp.ResponseHeader, name []byte, dst [][]byte) [][]byte {
	for _, s := range spellings(h, name) {
		dst = append(dst, h.PeekAll(string(s))...)
	}
	return dst
}

// Peek returns the first value of the field of h named name, in any case, or nil.
func Peek(h *fasthttp.ResponseHeader, name []byte) []byte {
	if v := h.PeekBytes(name); v != nil {
		return v
	}
	for _, s := range spellings(h, name) {
		if v := h.PeekBytes(s); v != nil {
			return v
		}
	}
	return nil
}

// Del removes every field of h named name, in any case.
func Del(h *fasthttp.ResponseHeader, name []byte) {
	for _, s := range spellings(h, name) {
		h.DelBytes(s)
	}
	h.DelBytes(name)
}
