// Package cache is the `cache` filter: a shared HTTP cache following RFC 9111, kept in a
// cost-bounded ristretto store that survives config reloads. See README.md.
package cache

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Filter is a built cache filter; one per route that uses it, safe for concurrent use.
type Filter struct {
	slot       int
	store      *store
	release    func() error
	route      string
	ttl        time.Duration
	swr, sie   time.Duration
	wait       time.Duration
	heuristic  bool
	maxBody    int64
	statuses   [400]bool // index status-200
	tagHeader  string
	query      []string
	keyHeaders []string
	m          *counters
	caller     filter.Caller // the route's upstream, for background revalidation; nil without
}

// Close releases the store; it is freed with the last snapshot using it.
func (f *Filter) Close() error { return f.release() }

// Cache-Status values (RFC 9211), fixed so that answering allocates nothing.
const (
	csHit        = "weir; hit"
	csStaleSWR   = "weir; hit; detail=stale-while-revalidate"
	csCollapsed  = "weir; hit; collapsed"
	csMiss       = "weir; fwd=uri-miss"
	csMissStored = "weir; fwd=uri-miss; stored"
	csVaryMiss   = "weir; fwd=vary-miss"
	csVaryStored = "weir; fwd=vary-miss; stored"
	csRequest    = "weir; fwd=request"
	csReqStored  = "weir; fwd=request; stored"
	csStale      = "weir; fwd=stale"
	csStaleStore = "weir; fwd=stale; stored"
	csRevalid    = "weir; fwd=stale; fwd-status=304"
	csSIE        = "weir; fwd=stale; detail=stale-if-error"
	csBypass     = "weir; fwd=bypass"
	csTooLarge   = "weir; fwd=uri-miss; detail=too-large"
	csOnlyCached = "weir; fwd=miss; detail=only-if-cached"
)

// state is a request's cache state from OnRequest to OnResponse; pooled.
type state struct {
	key         []byte // the primary key: method, URL part, key headers, consumer
	urlEnd      int    // key[4:urlEnd] is the URL part (host, path, query)
	keyStr      string // key as a string, made on a miss only
	req         directives
	noStore     bool // the request forbids storing
	hasAuth     bool
	forced      bool // the request asked for revalidation (no-cache, max-age=0)
	lead        *call
	stale       *entry // the stored entry being revalidated, kept for stale-if-error
	reval       bool   // conditionals of stale were put on the upstream request
	inm, ims    []byte // the client's own conditionals, taken off while the cache fetches
	reqTime     time.Time
	varyMiss    bool
	invalidate  bool // an unsafe method: a success invalidates the URL's entries
	bypass      bool
	took        bool // the client's conditionals were set aside (inm, ims)
	ccBuf       [][]byte
	storeVerdic string
	pass        bool // the key's last response could not be stored: no coalescing
}

var statePool = sync.Pool{New: func() any { return &state{key: make([]byte, 0, 256)} }}

func getState() *state { return statePool.Get().(*state) }

func putState(st *state) {
	k, inm, ims := st.key[:0], st.inm[:0], st.ims[:0]
	*st = state{key: k, inm: inm, ims: ims}
	statePool.Put(st)
}

// OnRequest answers from the cache when a fresh (or allowed stale) entry matches; otherwise it
// prepares the upstream request (conditionals of a stale entry) and, for a miss, coalesces with
// a request already fetching the same key.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	h := &c.Request.Header
	head := h.IsHead()
	if !h.IsGet() && !head {
		if h.IsPost() || h.IsPut() || h.IsDelete() || h.IsPatch() {
			st := getState()
			st.invalidate = true
			f.buildKey(c, st)
			*c.Slot(f.slot) = st
		}
		return filter.Continue
	}
	st := getState()
	*c.Slot(f.slot) = st
	if len(h.Peek("Range")) > 0 || len(h.Peek("If-Range")) > 0 {
		// Ranges are answered by the upstream; the cache neither serves nor stores them.
		st.bypass = true
		return filter.Continue
	}
	st.ccBuf = h.PeekAll("Cache-Control")
	parseCacheControl(&st.req, st.ccBuf)
	if !st.req.present {
		for _, v := range h.PeekAll("Pragma") {
			if containsToken(v, "no-cache") {
				st.req.noCache = true
			}
		}
	}
	// A HEAD is answered from the GET entry, but its own answer has no body to store.
	st.noStore = st.req.noStore || head
	st.hasAuth = len(h.Peek("Authorization")) > 0
	st.forced = st.req.noCache || st.req.maxAge == 0
	f.buildKey(c, st)

	now := time.Now()
	e, vary := f.lookup(c, st)
	if e != nil {
		age := e.age(now)
		if !st.forced && f.fresh(e, age, &st.req) {
			f.answer(c, e, now, csHit)
			putState(st)
			*c.Slot(f.slot) = nil
			return filter.Stop
		}
		if !st.forced && !e.mustReval && !e.noCache && e.swr > 0 && age < e.lifetime+e.swr {
			if f.caller != nil {
				// Every request gets the stale entry at once; one revalidates it in the
				// background through the route's upstream.
				if f.leadReval(st) {
					f.background(c, st, e)
				}
				f.answer(c, e, now, csStaleSWR)
				putState(st)
				*c.Slot(f.slot) = nil
				return filter.Stop
			}
			if !f.leadReval(st) {
				// Another request is revalidating this entry: serve it stale meanwhile.
				f.answer(c, e, now, csStaleSWR)
				putState(st)
				*c.Slot(f.slot) = nil
				return filter.Stop
			}
		} else if !st.forced && !st.noStore {
			// Concurrent revalidations of one entry coalesce like misses. A request that asked
			// for validation itself (no-cache, max-age=0) does its own.
			if e := f.coalesce(c, st); e != nil {
				f.answer(c, e, time.Now(), csCollapsed)
				putState(st)
				*c.Slot(f.slot) = nil
				return filter.Stop
			}
		}
		st.stale = e
		f.conditional(c, st, e)
		st.reqTime = now
		return filter.Continue
	}
	if st.req.onlyIfCached {
		st.bypass = true
		c.Response.Header.Set("Cache-Status", csOnlyCached)
		f.m.count(csOnlyCached)
		return c.Reply(fasthttp.StatusGatewayTimeout, nil)
	}
	st.varyMiss = vary
	if !st.noStore {
		if st.pass {
			// The key's last response could not be stored: no point waiting for this one.
		} else if e := f.coalesce(c, st); e != nil {
			f.answer(c, e, time.Now(), csCollapsed)
			putState(st)
			*c.Slot(f.slot) = nil
			return filter.Stop
		}
		// The cache wants a full response it can store; the client's own conditionals are
		// answered from it afterwards.
		f.takeConditionals(c, st)
	}
	st.reqTime = time.Now()
	return filter.Continue
}

// leadReval reports whether this request becomes the one that revalidates st's key (true), or
// another one already does (false).
func (f *Filter) leadReval(st *state) bool {
	st.keyStr = string(st.key)
	cl, lead := f.store.lead(st.keyStr)
	if lead {
		st.lead = cl
	}
	return lead
}

// coalesce makes this miss the leader of its key, or waits for the leader's entry. It returns
// the entry to answer with, or nil to go upstream.
func (f *Filter) coalesce(c *filter.Ctx, st *state) *entry {
	st.keyStr = string(st.key)
	if st.varyMiss {
		// Requests for other variants need not wait for this one.
		if m := f.store.get(st.keyStr); m != nil && m.marker {
			st.keyStr = string(appendVary(st.key, &c.Request.Header, m.vary))
		}
	}
	cl, lead := f.store.lead(st.keyStr)
	if lead {
		st.lead = cl
		return nil
	}
	t := time.NewTimer(f.wait)
	defer t.Stop()
	select {
	case <-cl.done:
	case <-t.C:
		// The leader is slow: this request goes upstream on its own rather than wait longer,
		// and the next miss leads anew (a leader that never finished cannot hold its key).
		f.store.abandon(st.keyStr, cl)
		return nil
	}
	e, _ := f.lookup(c, st)
	if e != nil && f.fresh(e, e.age(time.Now()), &st.req) {
		return e
	}
	return nil
}

// takeConditionals copies the client's If-None-Match and If-Modified-Since aside and removes them.
func (f *Filter) takeConditionals(c *filter.Ctx, st *state) {
	h := &c.Request.Header
	st.took = true
	if v := h.Peek("If-None-Match"); len(v) > 0 {
		st.inm = append(st.inm[:0], v...)
		h.Del("If-None-Match")
	}
	if v := h.Peek("If-Modified-Since"); len(v) > 0 {
		st.ims = append(st.ims[:0], v...)
		h.Del("If-Modified-Since")
	}
}

// conditional turns the upstream request into a revalidation of e (RFC 9111 §4.3.1).
func (f *Filter) conditional(c *filter.Ctx, st *state, e *entry) {
	f.takeConditionals(c, st)
	if len(e.etag) == 0 && len(e.lastMod) == 0 {
		return
	}
	if len(e.etag) > 0 {
		c.Request.Header.SetBytesV("If-None-Match", e.etag)
	}
	if len(e.lastMod) > 0 {
		c.Request.Header.SetBytesV("If-Modified-Since", e.lastMod)
	}
	st.reval = true
}

// fresh reports whether e may be served without contacting the upstream, given the request's
// directives (RFC 9111 §4.2 and §5.2.1).
func (f *Filter) fresh(e *entry, age time.Duration, req *directives) bool {
	if e.noCache {
		return false
	}
	life := e.lifetime
	if req.maxAge >= 0 && age > req.maxAge {
		return false
	}
	if req.minFresh >= 0 && life-age < req.minFresh {
		return false
	}
	if age < life {
		return true
	}
	// Stale: only a request's max-stale allows it, never past must-revalidate.
	if e.mustReval {
		return false
	}
	return req.maxStaleAny || (req.maxStale >= 0 && age-life <= req.maxStale)
}

// lookup finds the entry for the request: the primary key's entry, or the variant its Vary
// marker selects. vary tells that a marker was found but not the variant.
func (f *Filter) lookup(c *filter.Ctx, st *state) (*entry, bool) {
	e := f.store.get(unsafeString(st.key))
	if e != nil && e.pass {
		st.pass = true
		return nil, false
	}
	if e == nil || !e.marker {
		return e, false
	}
	n := len(st.key)
	st.key = appendVary(st.key, &c.Request.Header, e.vary)
	v := f.store.get(unsafeString(st.key))
	st.key = st.key[:n]
	if v != nil && v.pass {
		st.pass = true
		return nil, true
	}
	return v, v == nil
}

// answer writes e as the response: stored status, headers and body, Age and Cache-Status. A
// client's conditional request is answered 304 when it matches e (RFC 9110 §13.2.2).
func (f *Filter) answer(c *filter.Ctx, e *entry, now time.Time, status string) {
	r := &c.Response
	r.Reset()
	code := e.status
	if f.notModified(c, e) {
		code = fasthttp.StatusNotModified
	}
	r.SetStatusCode(code)
	for i := range e.header {
		fl := &e.header[i]
		if code == fasthttp.StatusNotModified && !keepOn304(fl.name) {
			continue
		}
		r.Header.AddBytesKV(fl.name, fl.value)
	}
	var buf [20]byte
	r.Header.SetBytesV("Age", strconv.AppendInt(buf[:0], int64(e.age(now)/time.Second), 10))
	r.Header.Set("Cache-Status", status)
	f.m.count(status)
	if code != fasthttp.StatusNotModified {
		r.SetBodyRaw(e.body)
	}
}

// notModified evaluates the client's If-None-Match (or, without it, If-Modified-Since) against
// e, from the request or from what the cache set aside.
func (f *Filter) notModified(c *filter.Ctx, e *entry) bool {
	if e.status != fasthttp.StatusOK {
		return false
	}
	inm := c.Request.Header.Peek("If-None-Match")
	ims := c.Request.Header.Peek("If-Modified-Since")
	if st, ok := (*c.Slot(f.slot)).(*state); ok && st != nil && st.took {
		inm, ims = st.inm, st.ims
	}
	if len(inm) > 0 {
		return len(e.etag) > 0 && etagMatch(inm, e.etag)
	}
	if len(ims) > 0 && !e.lastModTime.IsZero() {
		t, ok := parseHTTPDate(ims)
		return ok && !e.lastModTime.After(t)
	}
	return false
}

// etagMatch is If-None-Match's weak comparison against one stored ETag.
func etagMatch(list, etag []byte) bool {
	et := bytes.TrimPrefix(etag, []byte("W/"))
	for rest := list; len(rest) > 0; {
		var el []byte
		el, rest = httpsyntax.NextElement(rest)
		if len(el) == 1 && el[0] == '*' {
			return true
		}
		if bytes.Equal(bytes.TrimPrefix(el, []byte("W/")), et) {
			return true
		}
	}
	return false
}

// keepOn304 lists the fields a 304 carries (RFC 9110 §15.4.5).
func keepOn304(name []byte) bool {
	for _, n := range [...]string{"Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Vary", "Last-Modified"} {
		if httpsyntax.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// OnResponse stores a storable response, refreshes an entry on a 304, falls back to a stale
// entry on an error, and labels the answer with Cache-Status.
func (f *Filter) OnResponse(c *filter.Ctx) {
	st, _ := (*c.Slot(f.slot)).(*state)
	if st == nil {
		return
	}
	defer func() {
		*c.Slot(f.slot) = nil
		if st.lead != nil {
			f.store.finish(st.keyStr, st.lead)
		}
		putState(st)
	}()
	switch {
	case st.invalidate:
		// RFC 9111 §4.4: a successful unsafe request invalidates the stored responses of its URL.
		if s := c.Response.StatusCode(); s >= 200 && s < 400 {
			f.store.purge(string(st.key[4:st.urlEnd]), "", "")
		}
		return
	case st.bypass:
		if len(peekFold(&c.Response.Header, "Cache-Status")) == 0 {
			c.Response.Header.Set("Cache-Status", csBypass)
			f.m.count(csBypass)
		}
		return
	}
	now := time.Now()
	code := c.Response.StatusCode()
	if st.stale != nil {
		if st.reval && code == fasthttp.StatusNotModified {
			e := f.refresh(st.stale, &c.Response.Header, st.reqTime, now)
			f.put(st, e)
			f.answer(c, e, now, csRevalid)
			return
		}
		if code >= 500 || c.Err() != nil {
			e := st.stale
			sie := e.sie
			if st.req.staleIfError >= 0 {
				sie = st.req.staleIfError
			}
			if !e.mustReval && sie > 0 && e.age(now) < e.lifetime+sie {
				f.answer(c, e, now, csSIE)
				return
			}
		}
	}
	verdict := f.storeResponse(c, st, now)
	if st.lead != nil && st.stale == nil && st.storeVerdic == "" && code < 500 && c.Err() == nil {
		// Not storable (private, no-store, a cookie, too large…): the next misses of this key
		// go upstream together instead of queueing behind each other (a hit-for-pass).
		f.store.putPass(st.keyStr, string(st.key[4:st.urlEnd]))
	}
	// A client conditional set aside for the fetch is answered from the new response.
	if (len(st.inm) > 0 || len(st.ims) > 0) && code == fasthttp.StatusOK {
		if e := f.justStored(st); e != nil && f.notModified(c, e) {
			f.answer(c, e, now, verdict)
			return
		}
	}
	c.Response.Header.Set("Cache-Status", verdict)
	f.m.count(verdict)
}

// justStored finds the entry storeResponse put (nil if it put none).
func (f *Filter) justStored(st *state) *entry {
	if st.storeVerdic == "" {
		return nil
	}
	e := f.store.get(st.storeVerdic)
	return e
}

// verdict picks the Cache-Status of a forwarded request.
func verdict(st *state, stored bool) string {
	switch {
	case st.stale != nil && stored:
		return csStaleStore
	case st.stale != nil:
		return csStale
	case st.forced && stored:
		return csReqStored
	case st.forced:
		return csRequest
	case st.varyMiss && stored:
		return csVaryStored
	case st.varyMiss:
		return csVaryMiss
	case stored:
		return csMissStored
	}
	return csMiss
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

var _ io.Closer = (*Filter)(nil)
