// Package vary edits a response's Vary list for the filters whose answers depend on a request
// field (cors on Origin, compress on Accept-Encoding).
package vary

import (
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

var (
	hVary = []byte("Vary")
	vAny  = []byte("*")
)

// Add adds token to the response's Vary list unless it, or "*", is already there. Several
// Vary fields (from the upstream) are merged into one. It allocates nothing for lists of up to
// 256 bytes.
func Add(h *fasthttp.ResponseHeader, token []byte) {
	all := h.PeekAll("Vary")
	if len(all) == 0 {
		h.SetCanonical(hVary, token)
		return
	}
	for _, v := range all {
		for len(v) > 0 {
			var e []byte
			e, v = httpsyntax.NextElement(v)
			if httpsyntax.EqualFold(e, token) || httpsyntax.EqualFold(e, vAny) {
				return
			}
		}
	}
	var buf [256]byte
	b := buf[:0]
	for _, v := range all {
		if v = httpsyntax.TrimOWS(v); len(v) > 0 {
			b = append(b, v...)
			b = append(b, ", "...)
		}
	}
	b = append(b, token...)
	h.DelBytes(hVary)
	h.SetCanonical(hVary, b)
}
