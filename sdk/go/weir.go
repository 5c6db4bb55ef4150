package weir

import (
	"io"
	"unsafe"
)

// Handler is a plugin. HandleRequest runs for every request; returning next=false means the
// plugin wrote the response itself (see Response) and the upstream is not called. Otherwise
// HandleResponse runs after the rest of the chain, with the reqCtx HandleRequest returned.
type Handler interface {
	HandleRequest(req Request, resp Response) (next bool, reqCtx uint32)
	HandleResponse(reqCtx uint32, req Request, resp Response, isError bool)
}

// HandlerFunc adapts a function to a Handler whose HandleResponse does nothing.
type HandlerFunc func(req Request, resp Response) (next bool, reqCtx uint32)

// HandleRequest calls f.
func (f HandlerFunc) HandleRequest(req Request, resp Response) (bool, uint32) { return f(req, resp) }

// HandleResponse does nothing.
func (HandlerFunc) HandleResponse(uint32, Request, Response, bool) {}

var handler Handler

// Handle registers the plugin's handler. Call it from init; a module with no handler lets
// every request through.
func Handle(h Handler) { handler = h }

// HandleFunc registers f as the plugin's handler.
func HandleFunc(f func(req Request, resp Response) (next bool, reqCtx uint32)) {
	handler = HandlerFunc(f)
}

// packNext is the ABI's ctx_next: the request context in the upper 32 bits, next in bit 0.
func packNext(next bool, reqCtx uint32) uint64 {
	if !next {
		return 0
	}
	return uint64(reqCtx)<<32 | 1
}

// Features is a set of ABI feature flags.
type Features uint32

const (
	// BufferRequest keeps the request body readable by the upstream after the plugin read it.
	BufferRequest Features = 1
	// BufferResponse lets HandleResponse change the upstream's status, headers and body.
	BufferResponse Features = 2
	// Trailers enables the trailer header kinds.
	Trailers Features = 4
)

// EnableFeatures asks the host for f and returns every feature it supports. Called from init it
// lasts for the instance; called during a request, for that request only.
func EnableFeatures(f Features) Features { return Features(enableFeatures(uint32(f))) }

// Level is a log level.
type Level int32

const (
	LevelDebug Level = -1
	LevelInfo  Level = 0
	LevelWarn  Level = 1
	LevelError Level = 2
)

// Log writes msg to the host log at level.
func Log(level Level, msg string) { logMessage(int32(level), msg) }

// LogEnabled reports whether the host keeps messages at level; use it to skip formatting.
func LogEnabled(level Level) bool { return logEnabled(int32(level)) == 1 }

// Config returns the plugin's config: as the host hands it over (JSON in Weir).
func Config() []byte { return readField(getConfig) }

// scratch is reused by every getter: an instance serves one request at a time.
var scratch = make([]byte, 2048)

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// readField applies the buf/buf_limit rule: nothing is written unless it all fits, and the
// result is the full length either way.
func readField(get func(unsafe.Pointer, uint32) uint32) []byte {
	n := get(ptr(scratch), uint32(len(scratch)))
	if int(n) <= len(scratch) {
		return append([]byte(nil), scratch[:n]...)
	}
	b := make([]byte, n)
	if got := get(ptr(b), n); got <= n {
		return b[:got]
	}
	return nil
}

func readString(get func(unsafe.Pointer, uint32) uint32) string {
	n := get(ptr(scratch), uint32(len(scratch)))
	if int(n) <= len(scratch) {
		return string(scratch[:n])
	}
	return string(readField(get))
}

// readSeq is readField for the count_len results of the header getters.
func readSeq(get func(unsafe.Pointer, uint32) uint64) (count uint32, raw []byte) {
	cl := get(ptr(scratch), uint32(len(scratch)))
	n := uint32(cl)
	if int(n) <= len(scratch) {
		return uint32(cl >> 32), scratch[:n]
	}
	b := make([]byte, n)
	cl = get(ptr(b), n)
	if uint32(cl) > n {
		return 0, nil
	}
	return uint32(cl >> 32), b[:uint32(cl)]
}

// splitNUL splits the NUL-terminated sequence "a\x00b\x00" into at most count strings.
func splitNUL(count uint32, raw []byte) []string {
	if count == 0 {
		return nil
	}
	out := make([]string, 0, count)
	start := 0
	for i, c := range raw {
		if c == 0 && uint32(len(out)) < count {
			out = append(out, string(raw[start:i]))
			start = i + 1
		}
	}
	return out
}

// Request is the request being handled. Its methods call the host; the zero value is ready.
type Request struct{}

// Method returns the request method, e.g. "GET".
func (Request) Method() string { return readString(getMethod) }

// SetMethod replaces the request method.
func (Request) SetMethod(m string) { setMethod(m) }

// URI returns the request target as sent: path and query, still percent-encoded.
func (Request) URI() string { return readString(getURI) }

// SetURI replaces path and query; u must already be percent-encoded.
func (Request) SetURI(u string) { setURI(u) }

// ProtocolVersion returns e.g. "HTTP/1.1".
func (Request) ProtocolVersion() string { return readString(getProtocolVersion) }

// SourceAddr returns the client address, "ip:port" or "[ipv6]:port".
func (Request) SourceAddr() string { return readString(getSourceAddr) }

// Header returns the request headers.
func (Request) Header() Header { return Header{kind: 0} }

// Trailer returns the request trailers; it needs the Trailers feature.
func (Request) Trailer() Header { return Header{kind: 2} }

// Body returns the request body.
func (Request) Body() Body { return Body{kind: 0} }

// Response is the response: the local one being built in HandleRequest, or the upstream's in
// HandleResponse. The zero value is ready.
type Response struct{}

// StatusCode returns the status code.
func (Response) StatusCode() int { return int(getStatusCode()) }

// SetStatusCode sets the status code.
func (Response) SetStatusCode(code int) { setStatusCode(uint32(code)) }

// Header returns the response headers.
func (Response) Header() Header { return Header{kind: 1} }

// Trailer returns the response trailers; it needs the Trailers feature.
func (Response) Trailer() Header { return Header{kind: 3} }

// Body returns the response body.
func (Response) Body() Body { return Body{kind: 1} }

// Header is one header set (request, response or their trailers). Names are
// case-insensitive.
type Header struct{ kind uint32 }

// Get returns the first value of name, or "" when it is absent.
func (h Header) Get(name string) string {
	v, _ := h.Lookup(name)
	return v
}

// Lookup returns the first value of name and whether it is present.
func (h Header) Lookup(name string) (string, bool) {
	count, raw := readSeq(func(b unsafe.Pointer, n uint32) uint64 { return getHeaderValues(h.kind, name, b, n) })
	if count == 0 {
		return "", false
	}
	for i, c := range raw {
		if c == 0 {
			return string(raw[:i]), true
		}
	}
	return string(raw), true
}

// Values returns every value of name, in order.
func (h Header) Values(name string) []string {
	return splitNUL(readSeq(func(b unsafe.Pointer, n uint32) uint64 { return getHeaderValues(h.kind, name, b, n) }))
}

// Has reports whether name is present, without copying its value.
func (h Header) Has(name string) bool { return getHeaderValues(h.kind, name, nil, 0)>>32 != 0 }

// Names returns every header name, lowercased by the host.
func (h Header) Names() []string {
	return splitNUL(readSeq(func(b unsafe.Pointer, n uint32) uint64 { return getHeaderNames(h.kind, b, n) }))
}

// Set replaces every value of name with value.
func (h Header) Set(name, value string) { setHeaderValue(h.kind, name, value) }

// Add appends value to name.
func (h Header) Add(name, value string) { addHeaderValue(h.kind, name, value) }

// Del removes every value of name.
func (h Header) Del(name string) { removeHeader(h.kind, name) }

// Body is a request or response body: an io.Reader and io.Writer. Reads continue where the
// last stopped; the first write of a phase replaces the body.
type Body struct{ kind uint32 }

// Read reads up to len(p) bytes, returning io.EOF once the body is exhausted.
func (b Body) Read(p []byte) (int, error) {
	if len(p) == 0 {
		// The ABI traps on a zero-length read.
		return 0, nil
	}
	el := readBody(b.kind, ptr(p), uint32(len(p)))
	n := int(uint32(el))
	if el>>32 != 0 {
		return n, io.EOF
	}
	return n, nil
}

// Write appends p to the body.
func (b Body) Write(p []byte) (int, error) {
	writeBody(b.kind, ptr(p), uint32(len(p)))
	return len(p), nil
}

// WriteString appends s to the body without copying it.
func (b Body) WriteString(s string) (int, error) {
	writeBody(b.kind, unsafe.Pointer(unsafe.StringData(s)), uint32(len(s)))
	return len(s), nil
}
