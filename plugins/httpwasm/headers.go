package httpwasm

import (
	"context"

	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/plugins/internal/anycase"
)

// headerSet is the part of fasthttp's request and response headers the header functions need.
type headerSet interface {
	PeekAll(key string) [][]byte
	AddBytesKV(key, value []byte)
	DelBytes(key []byte)
	AddTrailerBytes(key []byte) error
}

// headers returns the header set of kind, and whether kind is a trailer kind.
func (s *State) headers(fn string, kind uint32) (headerSet, bool) {
	rc := s.request(fn)
	switch kind {
	case HeaderRequest:
		return &rc.Request.Header, false
	case HeaderResponse:
		return &rc.Response.Header, false
	case HeaderRequestTrailers:
		return &rc.Request.Header, true
	case HeaderResponseTrailers:
		return &rc.Response.Header, true
	}
	panic(trap(fn, "unknown header kind %d", kind))
}

// mutableHeaders returns the header set of kind for a change, enforcing the phase rules: the
// request (and its trailers) only in handle_request, the response after next only with
// buffer_response, trailers only with the trailers feature.
func (s *State) mutableHeaders(fn string, kind uint32) headerSet {
	h, trailers := s.headers(fn, kind)
	if trailers && s.features&FeatureTrailers == 0 {
		panic(&Trap{Func: fn, Msg: "trailers need feature trailers"})
	}
	switch kind {
	case HeaderRequest, HeaderRequestTrailers:
		s.mutateRequest(fn)
	default:
		s.mutateResponse(fn)
	}
	return h
}

func getHeaderNames(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind := u32(stack[0])
	h, trailers := s.headers("get_header_names", kind)
	s.scratch = s.scratch[:0]
	count := 0
	add := func(k []byte) {
		if len(k) == 0 || hasName(s.scratch, k) {
			return
		}
		for _, c := range k {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			s.scratch = append(s.scratch, c)
		}
		s.scratch = append(s.scratch, 0)
		count++
	}
	switch {
	case trailers && s.features&FeatureTrailers == 0:
		// Without the feature a host reports no trailers.
	case trailers:
		switch x := h.(type) {
		case *fasthttp.RequestHeader:
			for k := range x.Trailers() {
				add(k)
			}
		case *fasthttp.ResponseHeader:
			for k := range x.Trailers() {
				add(k)
			}
		}
	default:
		switch x := h.(type) {
		case *fasthttp.RequestHeader:
			for k := range x.All() {
				add(k)
			}
		case *fasthttp.ResponseHeader:
			for k := range x.All() {
				add(k)
			}
		}
	}
	n := writeIfFits("get_header_names", mod, u32(stack[1]), u32(stack[2]), s.scratch)
	stack[0] = countLen(count, n)
}

// hasName reports whether the NUL-terminated list holds k, ignoring ASCII case.
func hasName(list, k []byte) bool {
	for len(list) > 0 {
		i := 0
		for i < len(list) && list[i] != 0 {
			i++
		}
		if httpsyntax.EqualFold(list[:i], k) {
			return true
		}
		if i == len(list) {
			return false
		}
		list = list[i+1:]
	}
	return false
}

func countLen(count int, n uint32) uint64 {
	if count == 0 {
		return 0
	}
	return uint64(count)<<32 | uint64(n)
}

// isTrailerName reports whether name is a declared trailer of h.
func isTrailerName(h headerSet, name []byte) bool {
	switch x := h.(type) {
	case *fasthttp.RequestHeader:
		for k := range x.Trailers() {
			if httpsyntax.EqualFold(k, name) {
				return true
			}
		}
	case *fasthttp.ResponseHeader:
		for k := range x.Trailers() {
			if httpsyntax.EqualFold(k, name) {
				return true
			}
		}
	}
	return false
}

func getHeaderValues(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind := u32(stack[0])
	h, trailers := s.headers("get_header_values", kind)
	nameLen := u32(stack[2])
	if nameLen == 0 || nameLen > MaxFieldLen {
		panic(trap("get_header_values", "header name length %d (want 1..%d)", nameLen, MaxFieldLen))
	}
	name := read("get_header_values", mod, u32(stack[1]), nameLen)
	if trailers && (s.features&FeatureTrailers == 0 || !isTrailerName(h, name)) {
		stack[0] = 0
		return
	}
	vals := values(h, name)
	s.scratch = s.scratch[:0]
	for _, v := range vals {
		s.scratch = append(s.scratch, v...)
		s.scratch = append(s.scratch, 0)
	}
	n := writeIfFits("get_header_values", mod, u32(stack[3]), u32(stack[4]), s.scratch)
	stack[0] = countLen(len(vals), n)
}

// field reads and checks a header name and value from guest memory and spends their size from
// the request's header budget. A guest's header obeys the rules a client's header does at the
// edge (RFC 9110): the name is a token, the value has no control byte but HTAB (a CR or LF would
// split the message, a NUL or DEL is read differently by different servers), and the headers
// that frame the message or manage the connection are the gateway's alone (see ownedHeader).
// Anything else traps.
func (s *State) field(fn string, mod api.Module, stack []uint64) (name, value []byte) {
	nlen, vlen := u32(stack[2]), u32(stack[4])
	if nlen == 0 || uint64(nlen)+uint64(vlen) > MaxFieldLen {
		panic(trap(fn, "header of %d+%d bytes (name must be 1 byte or more, name+value at most %d)", nlen, vlen, MaxFieldLen))
	}
	cost := int(nlen) + int(vlen) + 4 // ": " and CRLF on the wire
	if limit := s.headerLimit(); s.headerBytes+cost > limit {
		panic(trap(fn, "header writes of this request would pass %d bytes (the plugin's header limit, server.max_header_bytes)", limit))
	}
	s.headerBytes += cost
	name = read(fn, mod, u32(stack[1]), nlen)
	if !httpsyntax.IsToken(name) {
		panic(trap(fn, "%.64q is not a valid header name", name))
	}
	if ownedHeader(name) {
		panic(trap(fn, "header %q frames the message or manages the connection; the gateway sets it", name))
	}
	value = read(fn, mod, u32(stack[3]), vlen)
	if i := httpsyntax.BadValueByte(value); i >= 0 {
		panic(trap(fn, "value of header %.64q has control byte %#02x (only HTAB is allowed)", name, value[i]))
	}
	return name, value
}

// ownedHeader reports whether name is one a guest may not set: Content-Length and
// Transfer-Encoding (the gateway frames every message from its body; a guest's value would
// desync the connection), and the hop-by-hop headers of RFC 9110 section 7.6.1 (Connection,
// Keep-Alive, TE, Trailer, Upgrade, Proxy-*), which belong to one connection, not to the
// message: a guest-set Connection could name end-to-end headers for the next hop to drop.
// Trailers a guest declares with the trailers feature are written by the host.
func ownedHeader(name []byte) bool {
	return httpsyntax.IsFraming(name) || len(name) > 6 && httpsyntax.EqualFold(name[:6], "proxy-")
}

func setHeaderValue(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind := u32(stack[0])
	h := s.mutableHeaders("set_header_value", kind)
	name, value := s.field("set_header_value", mod, stack)
	// The ABI replaces every value; fasthttp's Set replaces only the first field of the name.
	// Delete and add scans the header once, as Set alone does.
	del(h, name)
	if kind >= HeaderRequestTrailers {
		declareTrailer("set_header_value", h, name)
	}
	h.AddBytesKV(name, value)
}

func addHeaderValue(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind := u32(stack[0])
	h := s.mutableHeaders("add_header_value", kind)
	name, value := s.field("add_header_value", mod, stack)
	if kind >= HeaderRequestTrailers {
		declareTrailer("add_header_value", h, name)
	}
	h.AddBytesKV(name, value)
}

func declareTrailer(fn string, h headerSet, name []byte) {
	if isTrailerName(h, name) {
		return
	}
	if err := h.AddTrailerBytes(name); err != nil {
		panic(trap(fn, "cannot send %.64q as a trailer: %v", name, err))
	}
}

func removeHeader(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind := u32(stack[0])
	h := s.mutableHeaders("remove_header", kind)
	n := u32(stack[2])
	if n == 0 || n > MaxFieldLen {
		panic(trap("remove_header", "header name length %d (want 1..%d)", n, MaxFieldLen))
	}
	name := read("remove_header", mod, u32(stack[1]), n)
	if ownedHeader(name) {
		// The gateway frames the message and manages the connection itself, so removing one of
		// its headers has no effect. Not a trap: guests written for other hosts remove
		// Content-Length after replacing a body, and that stays correct here.
		return
	}
	del(h, name)
}

// Field names are case-insensitive. The request's are normalized, so fasthttp finds them in
// any case; a response from an upstream keeps its names as they were sent, so its fields are
// looked up through anycase.

// values returns the values of the fields of h named name.
func values(h headerSet, name []byte) [][]byte {
	if r, ok := h.(*fasthttp.ResponseHeader); ok {
		return anycase.Values(r, name, nil)
	}
	return h.PeekAll(b2s(name))
}

// del removes the fields of h named name.
func del(h headerSet, name []byte) {
	if r, ok := h.(*fasthttp.ResponseHeader); ok {
		anycase.Del(r, name)
		return
	}
	h.DelBytes(name)
}
