// Package cors implements the "cors" filter: the server side of the Fetch standard's CORS
// protocol. It answers preflight requests itself, without reaching the upstream, and adds the
// CORS response headers to every other answer for an allowed origin. The gateway owns CORS on
// a route that uses it: the upstream's own Access-Control-* headers are removed, so an origin
// the config does not allow never gets them from the upstream either.
package cors

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/vary"
)

var errOrigin = errors.New("cors: preflight from an origin that is not allowed")

// Header names, canonical, as the hot path hands them to fasthttp.
var (
	hOrigin        = []byte("Origin")
	hVary          = []byte("Vary")
	hRequestMethod = []byte("Access-Control-Request-Method")
	hRequestHdrs   = []byte("Access-Control-Request-Headers")
	hAllowOrigin   = []byte("Access-Control-Allow-Origin")
	hAllowCreds    = []byte("Access-Control-Allow-Credentials")
	hAllowMethods  = []byte("Access-Control-Allow-Methods")
	hAllowHeaders  = []byte("Access-Control-Allow-Headers")
	hExpose        = []byte("Access-Control-Expose-Headers")
	hMaxAge        = []byte("Access-Control-Max-Age")
	hPrivateNet    = []byte("Access-Control-Allow-Private-Network")

	vTrue = []byte("true")
	vAny  = []byte("*")
)

// owned are the response headers the filter decides alone; the upstream's are removed.
var owned = [][]byte{hAllowOrigin, hAllowCreds, hAllowMethods, hAllowHeaders, hExpose, hMaxAge, hPrivateNet}

// Filter is the built CORS policy. It is immutable after New and safe for concurrent use.
type Filter struct {
	anyOrigin      bool
	exact          map[string]struct{} // normal forms: lower case, no default port
	patterns       []pattern
	credentials    bool
	methods        []byte
	headers        []byte
	reflectHeaders bool
	expose         []byte
	maxAge         []byte
	varyPreflight  []byte
}

// OnRequest answers a preflight (OPTIONS with Origin and Access-Control-Request-Method): 204
// with the policy for an allowed origin, 403 without any CORS header otherwise. Either way the
// preflight stops here. Every other request continues; its headers come in OnResponse.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	req := &c.Request.Header
	if !req.IsOptions() || len(req.PeekBytes(hRequestMethod)) == 0 {
		return filter.Continue
	}
	origin, ok := f.origin(req)
	if len(origin) == 0 && ok {
		// An OPTIONS request without Origin is no preflight: it goes to the upstream.
		return filter.Continue
	}
	h := &c.Response.Header
	h.SetCanonical(hVary, f.varyPreflight)
	if !ok {
		return c.Fail(fasthttp.StatusForbidden, errOrigin)
	}
	f.setOrigin(h, origin)
	h.SetCanonical(hAllowMethods, f.methods)
	if f.reflectHeaders {
		if v := req.PeekBytes(hRequestHdrs); len(v) > 0 {
			h.SetCanonical(hAllowHeaders, v)
		}
	} else if len(f.headers) > 0 {
		h.SetCanonical(hAllowHeaders, f.headers)
	}
	if len(f.maxAge) > 0 {
		h.SetCanonical(hMaxAge, f.maxAge)
	}
	return c.Reply(fasthttp.StatusNoContent, nil)
}

// OnResponse replaces the upstream's CORS headers with the policy's for an allowed origin and
// removes them for any other, and marks the response as varying by Origin whenever its headers
// depend on it (every response, unless every origin is allowed).
func (f *Filter) OnResponse(c *filter.Ctx) {
	h := &c.Response.Header
	for _, n := range owned {
		h.DelBytes(n)
	}
	if !f.anyOrigin {
		vary.Add(h, hOrigin)
	}
	origin, ok := f.origin(&c.Request.Header)
	if !ok || len(origin) == 0 {
		return
	}
	f.setOrigin(h, origin)
	if len(f.expose) > 0 {
		h.SetCanonical(hExpose, f.expose)
	}
}

// setOrigin writes Access-Control-Allow-Origin (and -Credentials) for an allowed origin.
func (f *Filter) setOrigin(h *fasthttp.ResponseHeader, origin []byte) {
	if f.anyOrigin {
		h.SetCanonical(hAllowOrigin, vAny)
	} else {
		// The origin as the browser sent it: it compares the answer byte for byte.
		h.SetCanonical(hAllowOrigin, origin)
	}
	if f.credentials {
		h.SetCanonical(hAllowCreds, vTrue)
	}
}

// origin returns the request's Origin and whether it is allowed. A request without Origin
// returns (nil, true): it is no CORS request. Several Origin fields, an empty one or an
// overlong one are never allowed: browsers send exactly one.
func (f *Filter) origin(h *fasthttp.RequestHeader) ([]byte, bool) {
	all := h.PeekAll("Origin")
	switch {
	case len(all) == 0:
		return nil, true
	case len(all) > 1 || len(all[0]) == 0 || len(all[0]) > maxOrigin:
		return nil, false
	}
	o := all[0]
	return o, f.allowed(o)
}

// allowed matches an Origin value against the policy, ignoring the case of scheme and host.
func (f *Filter) allowed(o []byte) bool {
	if f.anyOrigin {
		return true
	}
	var buf [maxOrigin]byte
	lower := buf[:len(o)]
	for i, c := range o {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if _, ok := f.exact[string(lower)]; ok {
		return true
	}
	for _, p := range f.patterns {
		if len(lower) > len(p.prefix)+len(p.suffix) &&
			string(lower[:len(p.prefix)]) == p.prefix &&
			string(lower[len(lower)-len(p.suffix):]) == p.suffix &&
			isLabel(lower[len(p.prefix):len(lower)-len(p.suffix)]) {
			return true
		}
	}
	return false
}
