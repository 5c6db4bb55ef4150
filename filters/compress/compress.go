// Package compress implements the "compress" filter: it compresses response bodies with zstd,
// brotli or gzip, whichever the client's Accept-Encoding accepts and the server prefers, and
// marks every response whose encoding depends on that header with Vary: Accept-Encoding so
// that caches (the gateway's own among them) keep one variant per coding.
//
// The compressors are those fasthttp already links: klauspost/compress for gzip and zstd and
// molecule-man/go-brrr for brotli.
package compress

import (
	"bytes"
	"fmt"
	"io"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/filters/internal/vary"
)

// Filter compresses responses. It is immutable after New and safe for concurrent use.
type Filter struct {
	slot    int
	prefs   []coding
	enc     [numCodings]*encoders
	minSize int
	maxSize int
	types   []typeRule
}

const acceptEncoding = "Accept-Encoding"

var (
	hAcceptEncoding = []byte(acceptEncoding)
	hETag           = []byte("ETag")
)

// headersOfTheIdentity describe the uncompressed bytes and are wrong for the compressed ones:
// digests of the content, and byte ranges.
var headersOfTheIdentity = []string{"Accept-Ranges", "Content-MD5", "Content-Digest", "Repr-Digest", "Digest"}

// OnRequest reads Accept-Encoding and keeps the coding it chose for the response phase.
// A HEAD request gets no coding (its response has no body to compress).
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	chosen := none
	if !c.Request.Header.IsHead() {
		var a accepted
		a.reset()
		for _, v := range c.Request.Header.PeekAll(acceptEncoding) {
			a.add(v)
		}
		chosen = a.choose(f.prefs)
	}
	// A uint8 in an interface does not allocate.
	*c.Slot(f.slot) = uint8(chosen)
	return filter.Continue
}

// OnResponse compresses the body when the response is eligible and a coding was chosen.
func (f *Filter) OnResponse(c *filter.Ctx) {
	r := &c.Response
	h := &r.Header
	if !f.eligible(h, r.StatusCode()) {
		return
	}
	if c.Request.Header.IsHead() {
		// No body; the answer carries the Vary its GET would, judged by the length.
		if cl := h.ContentLength(); cl < 0 || cl >= f.minSize {
			vary.Add(h, hAcceptEncoding)
		}
		return
	}
	var size int
	if r.IsBodyStream() {
		size = h.ContentLength() // r.Body() would read the stream whole
	} else {
		size = len(r.Body())
	}
	if r.IsBodyStream() && (size < 0 || size > f.maxSize) {
		// Chunked, or too long to hold: compressed as it streams, when the stream can be
		// handed over (the proxy's can).
		d, ok := r.BodyStream().(interface{ Detach() io.ReadCloser })
		if !ok {
			return
		}
		vary.Add(h, hAcceptEncoding)
		v, _ := (*c.Slot(f.slot)).(uint8)
		if chosen := coding(v); chosen != none {
			r.SetBodyStream(newStream(d.Detach(), f.enc[chosen]), -1)
			setCodingHeaders(h, chosen)
		}
		return
	}
	if size < 0 || size < f.minSize || size > f.maxSize {
		return
	}
	// From here, what the client receives depends on Accept-Encoding.
	vary.Add(h, hAcceptEncoding)
	v, _ := (*c.Slot(f.slot)).(uint8)
	chosen := coding(v)
	if chosen == none {
		return
	}
	enc := f.enc[chosen].get()
	defer f.enc[chosen].put(enc)
	var body []byte
	if r.IsBodyStream() {
		if body = readStream(c, size, enc); body == nil {
			return
		}
	} else {
		body = r.Body()
	}
	out, err := enc.compress(body)
	if err != nil || len(out) >= len(body) {
		// Incompressible (already compressed media under a generic type): the original is
		// smaller, and still a correct answer for this client.
		if r.IsBodyStream() {
			r.SetBody(body) // copies, and closes the stream, which is at its end
		}
		return
	}
	// The response takes the encoder's buffer and the encoder keeps the response's old one
	// for next time: no copy, no allocation.
	enc.sink.b = r.SwapBody(out)[:0]
	h.SetContentLength(len(out))
	setCodingHeaders(h, chosen)
}

// setCodingHeaders marks a response compressed with chosen.
func setCodingHeaders(h *fasthttp.ResponseHeader, chosen coding) {
	h.SetContentEncoding(codingNames[chosen])
	for _, n := range headersOfTheIdentity {
		h.Del(n)
	}
	// A strong validator promises identical bytes, which the compressed variant is not; a
	// weak one (as nginx does) still lets If-None-Match revalidate it.
	if et := h.PeekBytes(hETag); len(et) > 0 && et[0] == '"' {
		var buf [128]byte
		h.SetBytesKV(hETag, append(append(buf[:0], "W/"...), et...))
	}
}

// eligible reports whether the response may be compressed at all, whatever the client accepts.
func (f *Filter) eligible(h *fasthttp.ResponseHeader, status int) bool {
	switch {
	case status < 200, status == fasthttp.StatusNoContent, status == fasthttp.StatusNotModified,
		status == fasthttp.StatusPartialContent: // ranges count bytes of the identity
		return false
	case len(h.ContentEncoding()) > 0: // already encoded: never twice
		return false
	case len(h.Peek("Content-Range")) > 0:
		return false
	case noTransform(h):
		return false
	}
	return f.typeMatches(h.ContentType())
}

// noTransform reports whether any Cache-Control field of the response holds no-transform,
// which forbids intermediaries to change the content coding (RFC 9111 section 5.2.2.6).
func noTransform(h *fasthttp.ResponseHeader) bool {
	for _, v := range h.PeekAll("Cache-Control") {
		for len(v) > 0 {
			var d []byte
			d, v = httpsyntax.NextElement(v)
			if i := bytes.IndexByte(d, '='); i >= 0 {
				d = httpsyntax.TrimOWS(d[:i])
			}
			if httpsyntax.EqualFold(d, "no-transform") {
				return true
			}
		}
	}
	return false
}

// typeMatches reports whether the media type of ct (parameters and case ignored) is listed.
func (f *Filter) typeMatches(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = httpsyntax.TrimOWS(ct)
	if len(ct) == 0 {
		return false // no type: it may be anything, and a client would sniff it
	}
	for _, r := range f.types {
		switch {
		case r.exact != "":
			if httpsyntax.EqualFold(ct, r.exact) {
				return true
			}
		case len(ct) > len(r.prefix)+len(r.suffix) && httpsyntax.EqualFold(ct[:len(r.prefix)], r.prefix) &&
			httpsyntax.EqualFold(ct[len(ct)-len(r.suffix):], r.suffix):
			return true
		}
	}
	return false
}

// readStream reads a streamed body of declared length n (at most max_size) into enc's input
// buffer, so it can be compressed whole. A body that breaks off is answered 502, as the proxy
// answers a small body that does, and readStream returns nil.
func readStream(c *filter.Ctx, n int, enc *encoder) []byte {
	r := &c.Response
	if cap(enc.in) < n {
		enc.in = make([]byte, n)
	}
	body := enc.in[:n]
	_, err := io.ReadFull(r.BodyStream(), body)
	if err != nil {
		r.Reset() // closes the stream and drops the upstream's headers
		c.Fail(fasthttp.StatusBadGateway, fmt.Errorf("compress: read upstream body: %w", err))
		return nil
	}
	return body
}
