// Package extauth implements the "extauth" filter: forward authentication, like Traefik's
// ForwardAuth or Envoy's ext_authz in HTTP mode. For each request the gateway asks an HTTP auth
// service, sending it chosen request headers (and optionally the body) plus the original
// method, URI and host; a 2xx answer lets the request through with chosen headers of the answer
// added to the upstream request, and any other answer is returned to the client as the
// service wrote it (status, chosen headers, body) while the upstream receives nothing.
package extauth

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

var (
	errDenied   = errors.New("extauth: denied by the auth service")
	errTooLarge = errors.New("extauth: request body over forward_body.max_bytes")
)

var (
	hXFMethod = []byte("X-Forwarded-Method")
	hXFURI    = []byte("X-Forwarded-Uri")
	hXFHost   = []byte("X-Forwarded-Host")
	hXFProto  = []byte("X-Forwarded-Proto")
	vHTTP     = []byte("http")
	vHTTPS    = []byte("https")
)

// Filter asks the auth service about each request. It is immutable after New (the cache and
// the failure flag are synchronised) and safe for concurrent use.
type Filter struct {
	// decisions count verdicts in weir_auth_decisions_total (README.md, Metrics).
	decisions telemetry.AuthDecisions
	hc        *fasthttp.HostClient
	url       string
	method    []byte
	timeout   time.Duration
	forward   [][]byte
	upstream  [][]byte
	client    [][]byte
	bodyMax   int // -1: the body is not sent
	failOpen  bool

	cache      *cache
	keyHeader  []byte
	keyCookie  []byte
	keyRequest bool

	log     zerolog.Logger
	failing atomic.Bool // the last call failed: log transitions, not every request
}

// Close closes the idle connections to the auth service when the snapshot retires.
func (f *Filter) Close() error {
	f.hc.CloseIdleConnections()
	return nil
}

// OnResponse does nothing.
func (f *Filter) OnResponse(*filter.Ctx) {}

// OnRequest removes the client's own copies of the headers the auth service may set, then
// lets the request through on a cached or fresh allow, and answers with the service's denial
// otherwise.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	st := f.decide(c)
	f.decisions.Count(st == filter.Continue)
	return st
}

func (f *Filter) decide(c *filter.Ctx) filter.Status {
	for _, n := range f.upstream {
		// Always, even when the service is down and fail is open: a client must never be able
		// to pose as the identity the service vouches for.
		c.Request.Header.DelBytes(n)
	}
	var key [sha256.Size]byte
	cacheable := false
	if f.cache != nil {
		if key, cacheable = f.cacheKey(c); cacheable {
			if e := f.cache.get(key); e != nil {
				for _, h := range e.headers {
					c.Request.Header.AddBytesKV(h[0], h[1])
				}
				return filter.Continue
			}
		}
	}

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if st, ok := f.build(c, req); !ok {
		return st
	}
	err := f.hc.DoTimeout(req, resp, f.timeout)
	if err == nil && resp.StatusCode() < 200 {
		err = fmt.Errorf("interim status %d as the final answer", resp.StatusCode())
	}
	if err != nil {
		return f.failed(c, err)
	}
	if f.failing.Swap(false) {
		f.log.Info().Msg("auth service answers again")
	}
	if st := resp.StatusCode(); st < 200 || st > 299 {
		return f.deny(c, resp)
	}
	var e *entry
	if cacheable {
		e = &entry{expires: time.Now().Add(f.cache.ttl).UnixNano()}
	}
	for _, n := range f.upstream {
		for _, v := range resp.Header.PeekAll(string(n)) {
			c.Request.Header.AddBytesKV(n, v)
			if e != nil {
				// Copied: resp goes back to its pool when this function returns.
				e.headers = append(e.headers, [2][]byte{n, append([]byte(nil), v...)})
			}
		}
	}
	if e != nil {
		f.cache.put(key, e)
	}
	return filter.Continue
}

// build writes the call to the auth service. It returns false with the status to return when
// the request cannot be asked about (its body is too large).
func (f *Filter) build(c *filter.Ctx, req *fasthttp.Request) (filter.Status, bool) {
	req.SetRequestURI(f.url)
	req.Header.SetMethodBytes(f.method)
	in := &c.Request.Header
	for _, n := range f.forward {
		for _, v := range in.PeekAll(string(n)) {
			req.Header.AddBytesKV(n, v)
		}
	}
	req.Header.SetCanonical(hXFMethod, in.Method())
	req.Header.SetCanonical(hXFURI, in.RequestURI())
	req.Header.SetCanonical(hXFHost, c.Host())
	if c.IsTLS() {
		req.Header.SetCanonical(hXFProto, vHTTPS)
	} else {
		req.Header.SetCanonical(hXFProto, vHTTP)
	}
	if f.bodyMax < 0 {
		return filter.Continue, true
	}
	body, err := f.body(c)
	if err != nil {
		if errors.Is(err, errTooLarge) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
			return c.Fail(fasthttp.StatusRequestEntityTooLarge, err), false
		}
		return c.Fail(fasthttp.StatusBadRequest, err), false
	}
	if ct := in.ContentType(); len(ct) > 0 {
		req.Header.SetContentTypeBytes(ct)
	}
	// Not copied: req lives only while c does.
	req.SetBodyRaw(body)
	return filter.Continue, true
}

// body returns the request body when it fits forward_body.max_bytes, reading a streamed body
// into memory (the upstream still gets all of it).
func (f *Filter) body(c *filter.Ctx) ([]byte, error) {
	r := &c.Request
	if cl := r.Header.ContentLength(); cl > f.bodyMax {
		return nil, errTooLarge
	}
	if r.IsBodyStream() {
		b, err := io.ReadAll(io.LimitReader(r.BodyStream(), int64(f.bodyMax)+1))
		if err != nil {
			return nil, fmt.Errorf("extauth: read request body: %w", err)
		}
		if len(b) > f.bodyMax {
			return nil, errTooLarge
		}
		r.SetBody(b)
		r.Header.SetContentLength(len(b))
	}
	b := r.Body()
	if len(b) > f.bodyMax {
		return nil, errTooLarge
	}
	return b, nil
}

// deny returns the service's answer to the client: status, the chosen headers, and the body
// with its Content-Type.
func (f *Filter) deny(c *filter.Ctx, resp *fasthttp.Response) filter.Status {
	out := &c.Response
	out.ResetBody()
	out.SetStatusCode(resp.StatusCode())
	for _, n := range f.client {
		for _, v := range resp.Header.PeekAll(string(n)) {
			out.Header.AddBytesKV(n, v)
		}
	}
	if b := resp.Body(); len(b) > 0 {
		if ct := resp.Header.ContentType(); len(ct) > 0 {
			out.Header.SetContentTypeBytes(ct)
		}
		out.SetBody(b)
	}
	c.SetReason(errDenied.Error())
	return filter.Stop
}

// failed applies the fail policy when there is no decision.
func (f *Filter) failed(c *filter.Ctx, err error) filter.Status {
	if !f.failing.Swap(true) {
		f.log.Warn().Err(err).Bool("fail_open", f.failOpen).Msg("auth service unavailable")
	}
	if f.failOpen {
		c.SetReason("extauth: auth service unavailable, failed open")
		return filter.Continue
	}
	return c.Fail(fasthttp.StatusServiceUnavailable, fmt.Errorf("extauth: auth service unavailable: %w", err))
}

// cacheKey digests the credential (and, for the request scope, the method, host and path) so
// that no credential is ever kept. A request without the credential is not cached.
func (f *Filter) cacheKey(c *filter.Ctx) ([sha256.Size]byte, bool) {
	var cred []byte
	if f.keyHeader != nil {
		cred = c.Request.Header.PeekBytes(f.keyHeader)
	} else {
		cred = c.Request.Header.CookieBytes(f.keyCookie)
	}
	if len(cred) == 0 {
		return [sha256.Size]byte{}, false
	}
	var buf [1024]byte
	b := appendPart(buf[:0], cred)
	if f.keyRequest {
		b = appendPart(b, c.Request.Header.Method())
		b = appendPart(b, c.Host())
		b = appendPart(b, c.Request.URI().Path())
	}
	return sha256.Sum256(b), true
}

// appendPart appends p with its length first, so two different sequences of parts never
// digest the same bytes.
func appendPart(b, p []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	return append(b, p...)
}
