// Package redirect implements the "redirect" filter: it answers with a redirect to a target
// built from a template (https://{host}{path}, /v2/users/{id}), or, with https: true, sends
// plain-HTTP requests to the same URL over HTTPS. The request never reaches the upstream.
package redirect

import (
	"errors"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Filter answers with a redirect. It is immutable after New and safe for concurrent use.
type Filter struct {
	tpl       *template
	status    int
	keepQuery bool
	onlyHTTP  bool // https: true; HTTPS requests continue
}

var (
	hLocation      = []byte("Location")
	hXFProto       = "X-Forwarded-Proto"
	errBadHost     = errors.New("redirect: the Host cannot be written into a URL")
	errBadLocation = errors.New("redirect: the target holds a byte a header may not carry")
)

// scratchLen is the stack buffer a Location is built in; a longer one (a long path and query)
// costs one allocation.
const scratchLen = 1024

// OnRequest builds the Location and answers. It allocates nothing for targets up to
// scratchLen bytes: every variable is copied, escaped where needed, from the request.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	https := isHTTPS(c)
	if f.onlyHTTP && https {
		return filter.Continue
	}
	var scratch [scratchLen]byte
	out := scratch[:0]
	uri := c.URI()
	for _, p := range f.tpl.parts {
		switch p.kind {
		case literal:
			out = append(out, p.lit...)
		case vHost, vHostname:
			host := c.Request.Header.Host()
			if p.kind == vHostname {
				host = hostname(host)
			}
			if len(host) == 0 || !hostBytes(host) {
				return c.Fail(400, errBadHost)
			}
			out = append(out, host...)
		case vPath:
			start := len(out)
			out = appendEscaped(out, uri.PathOriginal(), false)
			if len(out) == start {
				out = append(out, '/')
			}
		case vQuery:
			out = appendEscaped(out, uri.QueryString(), true)
		case vScheme:
			if https {
				out = append(out, "https"...)
			} else {
				out = append(out, "http"...)
			}
		case vParam:
			out = appendEscaped(out, c.Param(p.name), false)
		}
	}
	if f.keepQuery {
		if q := uri.QueryString(); len(q) > 0 {
			if f.tpl.qmark {
				out = append(out, '&')
			} else {
				out = append(out, '?')
			}
			out = appendEscaped(out, q, true)
		}
	}
	if f.tpl.relative {
		// "//host" and "/\host" are read by browsers as another host: a path (a raw route's,
		// or a parameter at the start) must never turn the target into one.
		i := 0
		for i+1 < len(out) && (out[i+1] == '/' || out[i+1] == '\\') {
			i++
		}
		out = out[i:]
	}
	// The escaping above admits no such byte; this is the last guard before a header.
	if httpsyntax.BadValueByte(out) >= 0 {
		return c.Fail(500, errBadLocation)
	}
	c.Response.Header.SetCanonical(hLocation, out)
	return c.Reply(f.status, nil)
}

// OnResponse does nothing: a redirect stops the chain (and an HTTPS request that passed has
// nothing to undo).
func (f *Filter) OnResponse(*filter.Ctx) {}

// isHTTPS reports the scheme the client used: X-Forwarded-Proto as the edge settled it (set
// from the connection, or kept from a trusted proxy, first element), else the connection.
func isHTTPS(c *filter.Ctx) bool {
	if v := c.Request.Header.Peek(hXFProto); len(v) > 0 {
		first, _ := httpsyntax.NextElement(v)
		return httpsyntax.EqualFold(first, "https")
	}
	return c.IsTLS()
}

// hostname strips the port from a Host value ("[::1]:8080" is "[::1]").
func hostname(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		for i, c := range h {
			if c == ']' {
				return h[:i+1]
			}
		}
		return h
	}
	for i, c := range h {
		if c == ':' {
			return h[:i]
		}
	}
	return h
}

// hostBytes reports whether h holds only the bytes of a host name, IP literal and port, as
// the edge's Host check admits.
func hostBytes(h []byte) bool {
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// urlSafe are the bytes copied as they are into a path: RFC 3986 pchar (unreserved,
// sub-delims, ":" and "@"), "/" and "%" (the gateway's normal form already escapes every
// other byte, so "%" starts an escape). In a query "?" is allowed too.
var urlSafe = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%" {
		t[c] = true
	}
	return t
}()

// appendEscaped appends b, percent-encoding every byte that is not urlSafe (and "?" outside a
// query): CR, LF, spaces, backslashes, "#" and non-ASCII can never reach the Location.
func appendEscaped(dst, b []byte, query bool) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range b {
		if urlSafe[c] || (query && c == '?') {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}
