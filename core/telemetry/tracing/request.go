package tracing

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/weir-gateway/weir/core/filter"
)

const (
	hTraceparent = "traceparent"
	hTracestate  = "tracestate"
	// traceparentLen is the length of a version 00 traceparent, the one the gateway writes.
	traceparentLen = 55
)

// Request is the trace of one request. It lives in the engine's pooled per-request state and
// is reached from the filter context (From); its zero value is ready for Begin.
type Request struct {
	t       *Tracer
	sampled bool
	traceID trace.TraceID
	hexID   [32]byte
	// ctx carries the innermost open span: the server span, or the span of the filter whose
	// OnRequest is running or whose OnResponse is still to come. nil unless sampled.
	ctx    context.Context
	server trace.Span
	up     trace.Span
	// frames are the open filter spans by pipeline index, with the context each started from.
	frames [filter.MaxSlots]frame
	// hdr holds a traceparent the gateway writes into the request.
	hdr [traceparentLen]byte
	// hadParent says the request came with a traceparent field (valid or not) to replace.
	hadParent bool
}

type frame struct {
	span   trace.Span
	parent context.Context
}

// From returns the trace of c, or nil when tracing is off (or c did not come from the engine).
func From(c *filter.Ctx) *Request {
	r, _ := c.Trace().(*Request)
	return r
}

// Sampled reports whether the request is recorded: only then do spans exist.
func (r *Request) Sampled() bool { return r != nil && r.sampled }

// TraceID returns the request's trace id in lowercase hex, or nil when it has none (tracing off,
// or Begin was not called). Unsampled requests have one too: the caller's, or the one the
// gateway started and sent upstream. The bytes are valid until the next Begin.
func (r *Request) TraceID() []byte {
	if r == nil || !r.traceID.IsValid() {
		return nil
	}
	hex.Encode(r.hexID[:], r.traceID[:])
	return r.hexID[:]
}

// Begin starts the trace of the request in c, which the router matched to route ("" when no
// route matched), and attaches it to c. It continues the caller's trace when c carries one
// valid traceparent, and starts a new one otherwise; only a sampled request gets spans.
func (r *Request) Begin(t *Tracer, c *filter.Ctx, route string) {
	*r = Request{t: t}
	c.SetTrace(r)
	h := &c.Request.Header
	var (
		parent parsed
		valid  bool
	)
	// Two traceparent fields are as invalid as a malformed one: there is no saying which the
	// caller meant.
	tp := h.PeekAll(hTraceparent)
	if len(tp) == 1 {
		parent, valid = parseTraceparent(tp[0])
	}
	r.hadParent = len(tp) > 0
	var ctx context.Context
	switch {
	case valid && parent.flags&byte(trace.FlagsSampled) == 0:
		// The caller chose not to record this trace (the parent-based sampler follows it): the
		// headers go upstream exactly as they came.
		r.traceID = parent.traceID
		return
	case valid:
		ctx = t.prop.Extract(context.Background(), headerCarrier{h})
	default:
		tid := newTraceID()
		if !t.sampledRoot(tid) {
			r.traceID = tid
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: newSpanID()})
			r.inject(h, sc)
			return
		}
		ctx = context.WithValue(context.Background(), rootIDKey{}, tid)
	}
	r.sampled = true
	name := route
	if name == "" {
		name = spanMethod(c.Request.Header.Method())
	}
	r.ctx, r.server = t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(serverAttrs(c, route)...))
	sc := r.server.SpanContext()
	r.traceID = sc.TraceID()
	// Calls made before the upstream's (a mirror, an auth callout) carry the server span.
	r.inject(h, sc)
}

// End ends the server span with the response in c; 5xx marks it failed.
func (r *Request) End(c *filter.Ctx) {
	if !r.sampled {
		return
	}
	status := c.Response.StatusCode()
	r.server.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		r.server.SetStatus(codes.Error, c.Reason())
	}
	r.server.End()
	// Keep the trace id for the access log; drop the references to the spans.
	id := r.traceID
	*r = Request{traceID: id}
}

// StartFilter opens the span of the filter at pipeline index i, named name, as a child of the
// innermost open span; it stays open until EndFilter(i), so the spans of later filters and
// of the upstream call nest inside it.
func (r *Request) StartFilter(i int, name string, attrs []attribute.KeyValue) {
	ctx, span := r.t.tracer.Start(r.ctx, name, trace.WithAttributes(attrs...))
	r.frames[i] = frame{span: span, parent: r.ctx}
	r.ctx = ctx
}

// EndFilter closes the span of the filter at index i. stopped says that its OnRequest ended
// the chain (a local reply); a 5xx reply marks the span failed.
func (r *Request) EndFilter(i int, c *filter.Ctx, stopped bool) {
	f := &r.frames[i]
	if f.span == nil {
		return
	}
	if stopped {
		status := c.Response.StatusCode()
		f.span.SetAttributes(attribute.Bool("weir.filter.stopped", true), semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			f.span.SetStatus(codes.Error, c.Reason())
		}
	}
	f.span.End()
	r.ctx = f.parent
	*f = frame{}
}

// StartUpstream opens the client span of one attempt to send c's request to target addr of
// upstream (attempt 0 is the first try, 1 the first retry) and writes its traceparent into
// the request. It returns nil, at no cost, when the request is not sampled; EndUpstream
// accepts that nil.
func StartUpstream(c *filter.Ctx, upstream, addr string, attempt int) *Request {
	r := From(c)
	if !r.Sampled() {
		return nil
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, methodAttrs(c.Request.Header.Method())...)
	attrs = append(attrs, attribute.String("weir.upstream", upstream), semconv.NetworkPeerAddress(addr))
	if host, port, err := net.SplitHostPort(addr); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	if attempt > 0 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(attempt))
	}
	_, r.up = r.t.tracer.Start(r.ctx, "upstream "+upstream, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrs...))
	r.inject(&c.Request.Header, r.up.SpanContext())
	return r
}

// EndUpstream ends the span StartUpstream opened: err is the attempt's failure, if any, and
// otherwise c.Response holds the upstream's answer (4xx and 5xx mark a client span failed).
func (r *Request) EndUpstream(c *filter.Ctx, err error) {
	if r == nil || r.up == nil {
		return
	}
	if err != nil {
		r.up.SetStatus(codes.Error, err.Error())
	} else {
		status := c.Response.StatusCode()
		r.up.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 400 {
			r.up.SetStatus(codes.Error, "")
		}
	}
	r.up.End()
	r.up = nil
}

// inject writes sc as the request's traceparent (replacing every one the client sent) and its
// tracestate, removing the client's when sc has none: a tracestate belongs to the traceparent
// it came with.
func (r *Request) inject(h *fasthttp.RequestHeader, sc trace.SpanContext) {
	if r.hadParent {
		h.Del(hTraceparent) // every one: SetBytesV replaces only the first
	}
	r.hadParent = true
	h.SetBytesV(hTraceparent, formatTraceparent(r.hdr[:0], sc))
	h.Del(hTracestate)
	if ts := sc.TraceState(); ts.Len() > 0 {
		h.Set(hTracestate, ts.String())
	}
}

// formatTraceparent appends the version 00 traceparent of sc to dst.
func formatTraceparent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
}

// parsed is a traceparent's fields.
type parsed struct {
	traceID trace.TraceID
	spanID  trace.SpanID
	flags   byte
}

// parseTraceparent reads a traceparent field exactly as the OpenTelemetry propagator
// (propagation.TraceContext) does, without allocating: the unsampled path must cost nothing.
// A fuzz test holds the two to the same verdicts.
func parseTraceparent(b []byte) (parsed, bool) {
	var p parsed
	var ver [1]byte
	if !cutHex(ver[:], &b, 2) || ver[0] > 254 { // 0xff is not a version
		return p, false
	}
	if !cutHex(p.traceID[:], &b, 32) || !cutHex(p.spanID[:], &b, 16) {
		return p, false
	}
	var flags [1]byte
	if !cutHex(flags[:], &b, 2) {
		return p, false
	}
	// Version 00 has exactly four fields and two flag bits; later versions may add both.
	if ver[0] == 0 && (len(b) != 0 || flags[0] > 3) {
		return p, false
	}
	p.flags = flags[0] & byte(trace.FlagsSampled|trace.FlagsRandom)
	return p, p.traceID.IsValid() && p.spanID.IsValid()
}

// cutHex decodes the next '-'-separated field of *b, which must be n lowercase hex digits,
// into dst, and leaves *b after the separator.
func cutHex(dst []byte, b *[]byte, n int) bool {
	part := *b
	rest := []byte(nil)
	for i, c := range part {
		if c == '-' {
			part, rest = part[:i], part[i+1:]
			break
		}
	}
	*b = rest
	if len(part) != n {
		return false
	}
	for i := 0; i < n; i += 2 {
		hi, ok1 := unhex(part[i])
		lo, ok2 := unhex(part[i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i/2] = hi<<4 | lo
	}
	return true
}

// unhex decodes a lowercase hex digit; the specification does not allow upper case.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// headerCarrier reads a request's trace context fields for the propagator, copying them: the
// span outlives the request's memory.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string {
	if key == hTracestate {
		// A tracestate may be split over several fields; they form one list.
		return string(joinFields(c.h.PeekAll(hTracestate)))
	}
	return string(c.h.Peek(key))
}

func joinFields(vals [][]byte) []byte {
	var out []byte
	for i, v := range vals {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, v...)
	}
	return out
}

func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }

func (c headerCarrier) Keys() []string { return []string{hTraceparent, hTracestate} }

// serverAttrs are the server span's attributes (OpenTelemetry HTTP semantic conventions).
func serverAttrs(c *filter.Ctx, route string) []attribute.KeyValue {
	h := &c.Request.Header
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, methodAttrs(h.Method())...)
	attrs = append(attrs, semconv.URLPath(string(c.Request.URI().PathOriginal())))
	scheme := "http"
	if c.IsTLS() {
		scheme = "https"
	}
	attrs = append(attrs, semconv.URLScheme(scheme))
	if route != "" {
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	if host := string(h.Host()); host != "" {
		if hn, _, err := net.SplitHostPort(host); err == nil {
			host = hn
		}
		attrs = append(attrs, semconv.ServerAddress(host))
	}
	if ip := c.ClientIP(); ip.IsValid() {
		attrs = append(attrs, semconv.ClientAddress(ip.String()))
	}
	if ua := h.UserAgent(); len(ua) > 0 {
		attrs = append(attrs, semconv.UserAgentOriginal(string(ua)))
	}
	return attrs
}

// knownMethods are the methods the conventions name; any other is reported as _OTHER, with the
// method as sent in http.request.method_original, so a client cannot make the attribute's values
// (and a backend's index of them) grow without bound.
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}

func spanMethod(m []byte) string {
	for _, k := range knownMethods {
		if string(m) == k {
			return k
		}
	}
	return "HTTP"
}

func methodAttrs(m []byte) []attribute.KeyValue {
	if k := spanMethod(m); k != "HTTP" {
		return []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(k)}
	}
	return []attribute.KeyValue{semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(string(m))}
}
