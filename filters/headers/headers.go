// Package headers implements the "headers" filter: it sets, adds and removes request headers
// before the request goes upstream and response headers before the response goes to the client.
//
// Edits run in a fixed order, whatever the order of keys in the config file: first every
// remove, then every set, then every add; within each step, headers in the order of their
// canonical names. A config is therefore applied the same way on every build and every reload.
package headers

import "github.com/weir-gateway/weir/core/filter"

// pair is one header edit, pre-converted to bytes at build so the hot path only copies.
type pair struct {
	name, value []byte
}

// phase is the compiled edit list of one direction.
type phase struct {
	remove [][]byte
	set    []pair
	add    []pair
}

func (p *phase) empty() bool { return len(p.remove) == 0 && len(p.set) == 0 && len(p.add) == 0 }

// headerEditor is what fasthttp's request and response headers have in common.
type headerEditor interface {
	DelBytes(key []byte)
	SetBytesKV(key, value []byte)
	AddBytesKV(key, value []byte)
}

// apply edits h. Set deletes first because fasthttp's Set replaces only the first of several
// values of a header, and "set" promises the header ends up with exactly one value.
func (p *phase) apply(h headerEditor) {
	for _, n := range p.remove {
		h.DelBytes(n)
	}
	for i := range p.set {
		h.DelBytes(p.set[i].name)
		h.SetBytesKV(p.set[i].name, p.set[i].value)
	}
	for i := range p.add {
		h.AddBytesKV(p.add[i].name, p.add[i].value)
	}
}

// Filter edits headers. It is immutable after New and safe for concurrent use.
type Filter struct {
	req, resp phase
}

// OnRequest applies the request edits.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	f.req.apply(&c.Request.Header)
	return filter.Continue
}

// OnResponse applies the response edits, to upstream responses and local replies alike.
func (f *Filter) OnResponse(c *filter.Ctx) {
	f.resp.apply(&c.Response.Header)
}
