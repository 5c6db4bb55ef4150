package cache

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// refreshTimeout bounds a background revalidation, retries included.
const refreshTimeout = 30 * time.Second

// background revalidates the stale entry e on a goroutine of its own, with a copy of the
// request made conditional on e's validators, sent through the route's upstream. A 304
// refreshes e, a storable answer replaces it, anything else (an error, a 5xx) leaves it as it
// is. The request's lead on the key passes to the goroutine, which ends it.
func (f *Filter) background(c *filter.Ctx, st *state, e *entry) {
	req := fasthttp.AcquireRequest()
	c.Request.CopyTo(req)
	h := &req.Header
	// A HEAD may have found the entry; the refresh must bring a body back.
	h.SetMethod(fasthttp.MethodGet)
	h.Del("If-None-Match")
	h.Del("If-Modified-Since")
	h.Del("If-Match")
	h.Del("If-Unmodified-Since")
	h.Del("Range")
	if len(e.etag) > 0 {
		h.SetBytesV("If-None-Match", e.etag)
	}
	if len(e.lastMod) > 0 {
		h.SetBytesV("If-Modified-Since", e.lastMod)
	}
	bg := &state{key: bytes.Clone(st.key), urlEnd: st.urlEnd, hasAuth: st.hasAuth, keyStr: st.keyStr}
	lead := st.lead
	st.lead = nil
	go func() {
		resp := fasthttp.AcquireResponse()
		defer func() {
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
			f.store.finish(bg.keyStr, lead)
		}()
		bg.reqTime = time.Now()
		if err := f.caller.Call(req, resp, refreshTimeout, int(f.maxBody)); err != nil {
			f.m.refreshFailed.Add(1)
			return
		}
		now := time.Now()
		code := resp.StatusCode()
		if code == fasthttp.StatusNotModified && (len(e.etag) > 0 || len(e.lastMod) > 0) {
			f.put(nil, f.refresh(e, &resp.Header, bg.reqTime, now))
			f.m.revalidated.Add(1)
			return
		}
		if code < 200 || code > 599 || !f.statuses[code-200] {
			f.m.refreshFailed.Add(1)
			return
		}
		fields, ok := copyFields(&resp.Header)
		if !ok {
			return
		}
		ne, vary, ok := f.analyze(fields, peekFold(&resp.Header, "Age"), code, bg, now)
		if !ok || int64(len(resp.Body())) > f.maxBody {
			return
		}
		ne.body = bytes.Clone(resp.Body())
		if ne.body == nil {
			ne.body = []byte{}
		}
		f.prepareKeys(h, bg, ne, vary)
		f.put(nil, ne)
		f.m.stored.Add(1)
	}()
}
