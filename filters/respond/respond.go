// Package respond implements the "respond" filter: it answers the request locally with a fixed
// status, body and headers, and the request never reaches the upstream. It is how a route is
// closed off (a protected prefix answering 403), put into maintenance (503 with Retry-After) or
// stubbed (a fixed 200), like Kong's request-termination plugin.
package respond

import (
	"github.com/weir-gateway/weir/core/filter"
)

// Filter answers every request with the configured response. It is immutable after New and safe
// for concurrent use.
type Filter struct {
	status      int
	body        []byte
	contentType []byte
	headers     []pair
}

type pair struct{ name, value []byte }

// OnRequest writes the response and stops the chain, so later filters and the upstream never
// see the request. The body is shared by every request and never written to, so it is handed
// to fasthttp without a copy.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	h := &c.Response.Header
	for _, p := range f.headers {
		h.SetBytesKV(p.name, p.value)
	}
	if len(f.contentType) > 0 {
		h.SetContentTypeBytes(f.contentType)
	}
	return c.Reply(f.status, f.body)
}

// OnResponse does nothing: a filter that stopped the chain gets no response phase.
func (f *Filter) OnResponse(*filter.Ctx) {}
