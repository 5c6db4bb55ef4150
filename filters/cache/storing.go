package cache

import (
	"bytes"
	"io"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// maxHeuristic caps heuristic freshness, as common caches do.
const maxHeuristic = 24 * time.Hour

// keepValidators is how long past its stale windows an entry with validators is kept, so a
// later request can revalidate it instead of fetching it whole.
const keepValidators = time.Minute

// storeResponse stores the upstream response when RFC 9111 §3 allows it and returns the
// Cache-Status to send.
func (f *Filter) storeResponse(c *filter.Ctx, st *state, now time.Time) string {
	code := c.Response.StatusCode()
	if st.noStore || code < 200 || code > 599 || !f.statuses[code-200] || c.Err() != nil {
		return verdict(st, false)
	}
	fields, ok := copyFields(&c.Response.Header)
	if !ok {
		return verdict(st, false)
	}
	e, vary, ok := f.analyze(fields, peekFold(&c.Response.Header, "Age"), code, st, now)
	if !ok {
		return verdict(st, false)
	}
	if c.Response.IsBodyStream() {
		cl := c.Response.Header.ContentLength()
		if int64(cl) > f.maxBody {
			return csTooLarge
		}
		d, ok := c.Response.BodyStream().(interface{ Detach() io.ReadCloser })
		if !ok {
			return verdict(st, false)
		}
		// The body is copied as it streams to the client; it is stored when it ended whole
		// within max_body_bytes, and otherwise passed on untouched.
		f.prepareKeys(&c.Request.Header, st, e, vary)
		t := &tee{src: d.Detach(), max: f.maxBody, f: f, e: e, vary: vary}
		if st.lead != nil {
			// Followers wake when the stream ends, stored or not.
			t.lead, t.leadKey = st.lead, st.keyStr
			st.lead = nil
		}
		c.Response.SetBodyStream(t, int(cl))
		return verdict(st, false)
	}
	body := c.Response.Body()
	if int64(len(body)) > f.maxBody {
		return csTooLarge
	}
	e.body = bytes.Clone(body)
	if e.body == nil {
		e.body = []byte{}
	}
	f.prepareKeys(&c.Request.Header, st, e, vary)
	f.put(st, e)
	st.storeVerdic = e.key
	return verdict(st, true)
}

// prepareKeys gives e (and, with Vary, its marker) their keys; h is the request's header.
func (f *Filter) prepareKeys(h *fasthttp.RequestHeader, st *state, e *entry, vary []string) {
	e.url = string(st.key[4:st.urlEnd])
	if len(vary) == 0 {
		e.key = string(st.key)
		return
	}
	e.vary = vary
	e.key = string(appendVary(st.key, h, vary))
}

// put stores e, with its Vary marker when it has one. A stored entry lives for its freshness
// lifetime, its stale windows and, when it can be revalidated, a little longer.
func (f *Filter) put(_ *state, e *entry) {
	ttl := e.lifetime + max(e.swr, e.sie)
	if len(e.etag) > 0 || len(e.lastMod) > 0 {
		ttl += max(e.lifetime, keepValidators)
	}
	if ttl < time.Second {
		ttl = time.Second
	}
	if len(e.vary) > 0 {
		primary := e.key[:len(e.key)-varyLen(e.key)]
		m := &entry{key: primary, url: e.url, tags: e.tags, vary: e.vary, marker: true}
		f.store.put(m, ttl)
	}
	f.store.put(e, ttl)
}

// varyLen is the length of the variant suffix of a key.
func varyLen(key string) int {
	if i := strings.Index(key, "\nvary "); i >= 0 {
		return len(key) - i
	}
	return 0
}

// skipField lists response fields never stored: framing and hop-by-hop fields belong to one
// message, Age and Cache-Status are computed when answering.
func skipField(name []byte) bool {
	return httpsyntax.IsHopByHop(name) || httpsyntax.IsFraming(name) ||
		httpsyntax.EqualFold(name, "Age") || httpsyntax.EqualFold(name, "Cache-Status")
}

// copyFields copies the response's fields out of fasthttp's buffers. ok is false when the
// response sets a cookie: a cookie is meant for one client, and a shared cache must not hand it
// to others.
func copyFields(h *fasthttp.ResponseHeader) ([]field, bool) {
	var out []field
	for k, v := range h.All() {
		if httpsyntax.EqualFold(k, "Set-Cookie") {
			return nil, false
		}
		if skipField(k) {
			continue
		}
		out = append(out, field{name: bytes.Clone(k), value: bytes.Clone(v)})
	}
	return out, true
}

// peekFold is Peek for any spelling of name: the proxy keeps the upstream's field names as sent.
func peekFold(h *fasthttp.ResponseHeader, name string) []byte {
	for k, v := range h.All() {
		if httpsyntax.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func values(fields []field, name string) [][]byte {
	var out [][]byte
	for _, fl := range fields {
		if httpsyntax.EqualFold(fl.name, name) {
			out = append(out, fl.value)
		}
	}
	return out
}

func first(fields []field, name string) []byte {
	for _, fl := range fields {
		if httpsyntax.EqualFold(fl.name, name) {
			return fl.value
		}
	}
	return nil
}

// analyze decides whether a response with these fields may be stored (RFC 9111 §3) and
// computes its freshness (§4.2). vary lists the request fields that select it.
func (f *Filter) analyze(fields []field, age []byte, code int, st *state, now time.Time) (*entry, []string, bool) {
	var d directives
	parseCacheControl(&d, values(fields, "Cache-Control"))
	if d.noStore || d.private {
		return nil, nil, false
	}
	// §3.5: a shared cache stores an answer to a request with Authorization only when the
	// response says it may.
	if st.hasAuth && !d.mustRevalidate && !d.public && d.sMaxAge < 0 {
		return nil, nil, false
	}
	vary, ok := parseVary(values(fields, "Vary"))
	if !ok {
		return nil, nil, false
	}
	e := &entry{status: code, header: fields, stored: now, noCache: d.noCache,
		mustReval: d.mustRevalidate || d.proxyRevalidate}
	e.etag = first(fields, "ETag")
	e.lastMod = first(fields, "Last-Modified")
	if t, ok := parseHTTPDate(e.lastMod); ok {
		e.lastModTime = t
	}
	f.freshness(e, &d, fields, age, st.reqTime, now)
	validators := len(e.etag) > 0 || len(e.lastMod) > 0
	if e.lifetime <= 0 && !validators {
		return nil, nil, false
	}
	for _, v := range values(fields, f.tagHeader) {
		for _, t := range strings.FieldsFunc(string(v), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			e.tags = append(e.tags, t)
		}
	}
	return e, vary, true
}

// freshness sets e's lifetime, initial age and stale windows from its fields.
func (f *Filter) freshness(e *entry, d *directives, fields []field, age []byte, reqTime, now time.Time) {
	date, okDate := parseHTTPDate(first(fields, "Date"))
	if !okDate {
		date = now
	}
	switch {
	case f.ttl > 0:
		e.lifetime = f.ttl
	case d.sMaxAge >= 0:
		e.lifetime = d.sMaxAge
	case d.maxAge >= 0:
		e.lifetime = d.maxAge
	case len(first(fields, "Expires")) > 0:
		if exp, ok := parseHTTPDate(first(fields, "Expires")); ok {
			e.lifetime = max(0, exp.Sub(date))
		}
	case f.heuristic && !e.lastModTime.IsZero() && heuristicStatus(e.status):
		e.lifetime = min(max(0, date.Sub(e.lastModTime))/10, maxHeuristic)
	}
	if d.sMaxAge >= 0 {
		// s-maxage implies proxy-revalidate (RFC 9111 §5.2.2.10).
		e.mustReval = true
	}
	ageValue, _ := parseAge(age)
	apparent := max(0, now.Sub(date))
	delay := max(0, now.Sub(reqTime))
	e.initialAge = max(apparent, ageValue+delay)
	e.swr, e.sie = f.swr, f.sie
	if d.staleWhileRevalidate >= 0 {
		e.swr = d.staleWhileRevalidate
	}
	if d.staleIfError >= 0 {
		e.sie = d.staleIfError
	}
}

// heuristicStatus: RFC 9110 §15.1's heuristically cacheable statuses.
func heuristicStatus(s int) bool {
	switch s {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// refresh is old updated with a 304's fields (RFC 9111 §4.3.4): each field the 304 carries
// replaces the stored ones of that name; freshness is computed anew.
func (f *Filter) refresh(old *entry, h *fasthttp.ResponseHeader, reqTime, now time.Time) *entry {
	upd, _ := copyFields(h)
	fields := make([]field, 0, len(old.header)+len(upd))
	for _, fl := range old.header {
		replaced := false
		for _, u := range upd {
			if httpsyntax.EqualFold(u.name, fl.name) {
				replaced = true
				break
			}
		}
		if !replaced {
			fields = append(fields, fl)
		}
	}
	for _, u := range upd {
		if httpsyntax.EqualFold(u.name, "Content-Type") || httpsyntax.EqualFold(u.name, "Content-Encoding") {
			continue // they describe the stored body, not the 304
		}
		fields = append(fields, u)
	}
	e := *old
	e.header = fields
	e.stored = now
	var d directives
	parseCacheControl(&d, values(fields, "Cache-Control"))
	e.noCache = d.noCache
	e.mustReval = d.mustRevalidate || d.proxyRevalidate
	e.lifetime = 0
	f.freshness(&e, &d, fields, peekFold(h, "Age"), reqTime, now)
	return &e
}

// parseVary returns the lowercased field names of Vary; ok is false for Vary: *, which no
// stored response can match.
func parseVary(vs [][]byte) ([]string, bool) {
	var out []string
	for _, v := range vs {
		for rest := v; len(rest) > 0; {
			var el []byte
			el, rest = httpsyntax.NextElement(rest)
			if len(el) == 0 {
				continue
			}
			if len(el) == 1 && el[0] == '*' {
				return nil, false
			}
			n := strings.ToLower(string(el))
			dup := false
			for _, x := range out {
				dup = dup || x == n
			}
			if !dup {
				out = append(out, n)
			}
		}
	}
	return out, true
}

// tee copies a streamed body as the client receives it and stores it once it ended whole
// within max bytes. Past max it stops copying; the client gets every byte either way.
type tee struct {
	src     io.ReadCloser
	buf     []byte
	max     int64
	over    bool
	eof     bool
	failed  bool
	f       *Filter
	e       *entry
	vary    []string
	lead    *call
	leadKey string
}

func (t *tee) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 && !t.over {
		if int64(len(t.buf)+n) > t.max {
			t.over, t.buf = true, nil
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	switch {
	case err == io.EOF:
		t.eof = true
	case err != nil:
		t.failed = true
	}
	return n, err
}

func (t *tee) Close() error {
	err := t.src.Close()
	if t.eof && !t.over && !t.failed && t.e != nil {
		t.e.body = t.buf
		if t.e.body == nil {
			t.e.body = []byte{}
		}
		t.f.put(nil, t.e)
	}
	t.e = nil
	if t.lead != nil {
		t.f.store.finish(t.leadKey, t.lead)
		t.lead = nil
	}
	return err
}
