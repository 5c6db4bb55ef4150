package proxywasm

import (
	"context"
	"encoding/binary"
	"strconv"

	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/plugins/internal/anycase"
)

// Header maps as the ABI serialises them: a u32 count, then each pair's key and value sizes
// (u32 each), then each key and value followed by a NUL. Request headers begin with the
// pseudo-headers :method, :path, :authority and :scheme, response headers with :status; names
// are lowercase, as HTTP/2 has them and Envoy presents them.

const maxURILen = 64 << 10

// parsePairs decodes a serialised map. The returned slices point into raw.
func parsePairs(raw []byte) ([][2][]byte, bool) {
	if len(raw) == 0 || (len(raw) == 1 && raw[0] == 0) {
		return nil, true
	}
	if len(raw) < 4 {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(raw))
	if n > (len(raw)-4)/8 {
		return nil, false
	}
	sizes := raw[4 : 4+8*n]
	data := raw[4+8*n:]
	out := make([][2][]byte, 0, n)
	for i := 0; i < n; i++ {
		ks, vs := int(le32(sizes[8*i:])), int(le32(sizes[8*i+4:]))
		if ks < 0 || vs < 0 || ks+1 > len(data) {
			return nil, false
		}
		k := data[:ks]
		if data[ks] != 0 {
			return nil, false
		}
		data = data[ks+1:]
		if vs+1 > len(data) || data[vs] != 0 {
			return nil, false
		}
		out = append(out, [2][]byte{k, data[:vs]})
		data = data[vs+1:]
	}
	return out, true
}

// validField reports whether name and value may be written: a name is a token (or a
// pseudo-header), a value has no control byte but HTAB.
func validField(name, value []byte) bool {
	if len(name) == 0 || len(name)+len(value) > 64<<10 {
		return false
	}
	if name[0] == ':' {
		return httpsyntax.IsToken(name[1:])
	}
	return httpsyntax.IsToken(name) && httpsyntax.BadValueByte(value) < 0
}

// owned headers frame the message or belong to one connection: the gateway's, never a
// guest's. Writes of them are dropped (guests written for Envoy often set content-length after
// changing a body; the gateway frames every message from its body anyway).
func owned(name []byte) bool { return httpsyntax.IsFraming(name) || httpsyntax.IsHopByHop(name) }

// fields calls fn for each field of a map of h, pseudo-headers first. It reports false when
// the map is not available in this context.
func (v *vm) fields(h *httpCtx, kind uint32, fn func(k, val []byte)) bool {
	if callMap(kind) {
		return v.callFields(kind, fn)
	}
	switch kind {
	case mapRequestHeaders:
		req := &h.c.Request
		fn([]byte(":method"), req.Header.Method())
		fn([]byte(":path"), req.Header.RequestURI())
		fn([]byte(":authority"), req.Header.Host())
		if h.c.IsTLS() {
			fn([]byte(":scheme"), []byte("https"))
		} else {
			fn([]byte(":scheme"), []byte("http"))
		}
		req.Header.VisitAll(func(k, val []byte) {
			if httpsyntax.EqualFold(k, "host") {
				return
			}
			fn(k, val)
		})
		return true
	case mapResponseHeaders:
		if !h.response {
			return false
		}
		v.scratch = strconv.AppendInt(v.scratch[:0], int64(h.c.Response.StatusCode()), 10)
		fn([]byte(":status"), v.scratch)
		h.c.Response.Header.VisitAll(fn)
		return true
	case mapRequestTrailers, mapResponseTrailer:
		if kind == mapResponseTrailer && !h.response {
			return false
		}
		if t, chunked := trailersOf(h, kind); chunked {
			visitTrailers(t, fn)
		}
		return true
	}
	return false
}

func lowerInto(dst, src []byte) {
	for i, c := range src {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst[i] = c
	}
}

func proxyGetHeaderMapSize(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	h := v.cur
	if h == nil && !callMap(u32(stack[0])) {
		stack[0] = statusNotFound
		return
	}
	size := 4
	if !v.fields(h, u32(stack[0]), func(k, val []byte) { size += 8 + len(k) + len(val) + 2 }) {
		stack[0] = statusNotFound
		return
	}
	if !writeU32(mod, u32(stack[1]), uint32(size)) {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = statusOK
}

func proxyGetHeaderMapPairs(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	h := v.cur
	kind, retPtr, retSize := u32(stack[0]), u32(stack[1]), u32(stack[2])
	if h == nil && !callMap(kind) {
		stack[0] = statusNotFound
		return
	}
	if _, ok := view(mod, retPtr, 4); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if _, ok := view(mod, retSize, 4); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	n, size := 0, 4
	if !v.fields(h, kind, func(k, val []byte) { n++; size += 8 + len(k) + len(val) + 2 }) {
		stack[0] = statusNotFound
		return
	}
	if n == 0 {
		writeU32(mod, retPtr, 0)
		writeU32(mod, retSize, 0)
		stack[0] = statusOK
		return
	}
	ptr, b, ok := v.allocate(ctx, mod, uint32(size))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	binary.LittleEndian.PutUint32(b, uint32(n))
	i, off := 0, 4+8*n
	v.fields(h, kind, func(k, val []byte) {
		binary.LittleEndian.PutUint32(b[4+8*i:], uint32(len(k)))
		binary.LittleEndian.PutUint32(b[8+8*i:], uint32(len(val)))
		lowerInto(b[off:], k)
		off += len(k)
		b[off] = 0
		off += 1 + copy(b[off+1:], val)
		b[off] = 0
		off++
		i++
	})
	writeU32(mod, retPtr, ptr)
	writeU32(mod, retSize, uint32(size))
	stack[0] = statusOK
}

// pseudo returns a pseudo-header's value.
func (v *vm) pseudo(h *httpCtx, kind uint32, name []byte) ([]byte, bool) {
	switch kind {
	case mapRequestHeaders:
		switch string(name) {
		case ":method":
			return h.c.Request.Header.Method(), true
		case ":path":
			return h.c.Request.Header.RequestURI(), true
		case ":authority":
			return h.c.Request.Header.Host(), true
		case ":scheme":
			if h.c.IsTLS() {
				return []byte("https"), true
			}
			return []byte("http"), true
		}
	case mapResponseHeaders:
		if string(name) == ":status" {
			v.scratch = strconv.AppendInt(v.scratch[:0], int64(h.c.Response.StatusCode()), 10)
			return v.scratch, true
		}
	}
	return nil, false
}

func proxyGetHeaderMapValue(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	h := v.cur
	kind := u32(stack[0])
	if callMap(kind) {
		proxyGetCallHeaderValue(ctx, v, mod, stack)
		return
	}
	if h == nil || !mapAvailable(h, kind) {
		stack[0] = statusNotFound
		return
	}
	key, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	var val []byte
	switch {
	case len(key) > 0 && key[0] == ':':
		val, ok = v.pseudo(h, kind, key)
	case kind == mapRequestHeaders:
		if httpsyntax.EqualFold(key, "host") {
			val, ok = nil, false
		} else {
			val = h.c.Request.Header.PeekBytes(key)
			ok = val != nil
		}
	case kind == mapResponseHeaders:
		val = anycase.Peek(&h.c.Response.Header, key)
		ok = val != nil
	case isTrailerMap(kind):
		if t, chunked := trailersOf(h, kind); chunked {
			val = peekTrailer(t, key)
		}
		ok = val != nil
	default:
		ok = false
	}
	if !ok {
		stack[0] = statusNotFound
		return
	}
	stack[0] = v.give(ctx, mod, val, u32(stack[3]), u32(stack[4]))
}

func mapAvailable(h *httpCtx, kind uint32) bool {
	switch kind {
	case mapRequestHeaders, mapRequestTrailers:
		return true
	case mapResponseHeaders, mapResponseTrailer:
		return h.response
	}
	return false
}

// writable checks that the effective context may change map kind now.
func writable(h *httpCtx, kind uint32) uint64 {
	switch {
	case h == nil:
		return statusNotFound
	case kind == mapRequestHeaders && !h.response, kind == mapResponseHeaders && h.response,
		kind == mapRequestTrailers && !h.response, kind == mapResponseTrailer && h.response:
		return statusOK
	case callMap(kind):
		return statusBadArgument // a callout's response is read-only
	case kind == mapRequestHeaders || kind == mapResponseHeaders || isTrailerMap(kind):
		return statusBadArgument // the other direction's fields are gone or not yet there
	}
	return statusNotFound
}

// spend takes n header bytes from the request's budget (the server's max_header_bytes).
func (h *httpCtx) spend(k, val []byte) bool {
	h.headerBytes -= len(k) + len(val) + 4
	return h.headerBytes >= 0
}

// setPseudo writes a pseudo-header: :path (path and query only, never an authority), :method,
// :authority (the Host header), :status (final statuses); :scheme is accepted and ignored,
// since the upstream's scheme is its config's.
func setPseudo(h *httpCtx, kind uint32, name, val []byte) uint64 {
	switch kind {
	case mapRequestHeaders:
		switch string(name) {
		case ":path":
			if !validPath(val) {
				return statusBadArgument
			}
			h.c.Request.SetRequestURIBytes(val)
			return statusOK
		case ":method":
			if !httpsyntax.IsToken(val) {
				return statusBadArgument
			}
			h.c.Request.Header.SetMethodBytes(val)
			return statusOK
		case ":authority":
			if !validAuthority(val) {
				return statusBadArgument
			}
			h.c.Request.Header.SetHostBytes(val)
			return statusOK
		case ":scheme":
			return statusOK
		}
	case mapResponseHeaders:
		if string(name) == ":status" {
			s, err := strconv.Atoi(string(val))
			if err != nil || s < 200 || s > 599 {
				return statusBadArgument
			}
			h.c.Response.SetStatusCode(s)
			return statusOK
		}
	}
	return statusBadArgument
}

func validPath(p []byte) bool {
	if len(p) == 0 || len(p) > maxURILen || p[0] != '/' || (len(p) > 1 && p[1] == '/') {
		return false
	}
	for _, c := range p {
		if c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

func validAuthority(a []byte) bool {
	if len(a) == 0 || len(a) > 255 {
		return false
	}
	for _, c := range a {
		if c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' || c == '\\' {
			return false
		}
	}
	return true
}

// writeField adds or replaces one field.
func writeField(h *httpCtx, kind uint32, k, val []byte, add bool) uint64 {
	if !validField(k, val) {
		return statusBadArgument
	}
	if !h.spend(k, val) {
		return statusBadArgument
	}
	if isTrailerMap(kind) {
		return writeTrailer(h, kind, k, val, add)
	}
	if k[0] == ':' {
		return setPseudo(h, kind, k, val)
	}
	if owned(k) || (kind == mapRequestHeaders && httpsyntax.EqualFold(k, "host")) {
		return statusOK // the gateway's; :authority changes the host
	}
	if kind == mapRequestHeaders {
		if add {
			h.c.Request.Header.AddBytesKV(k, val)
		} else {
			h.c.Request.Header.SetBytesKV(k, val)
		}
	} else {
		if add {
			h.c.Response.Header.AddBytesKV(k, val)
		} else {
			anycase.Del(&h.c.Response.Header, k)
			h.c.Response.Header.SetBytesKV(k, val)
		}
	}
	return statusOK
}

func fieldArgs(mod api.Module, stack []uint64) (k, val []byte, ok bool) {
	if k, ok = view(mod, u32(stack[1]), u32(stack[2])); !ok {
		return nil, nil, false
	}
	val, ok = view(mod, u32(stack[3]), u32(stack[4]))
	return k, val, ok
}

func proxyAddHeaderMapValue(ctx context.Context, mod api.Module, stack []uint64) {
	headerWrite(ctx, mod, stack, true)
}

func proxyReplaceHeaderMapValue(ctx context.Context, mod api.Module, stack []uint64) {
	headerWrite(ctx, mod, stack, false)
}

func headerWrite(ctx context.Context, mod api.Module, stack []uint64, add bool) {
	h := vmOf(ctx).cur
	kind := u32(stack[0])
	if st := writable(h, kind); st != statusOK {
		stack[0] = st
		return
	}
	k, val, ok := fieldArgs(mod, stack)
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = writeField(h, kind, k, val, add)
}

func proxyRemoveHeaderMapValue(ctx context.Context, mod api.Module, stack []uint64) {
	h := vmOf(ctx).cur
	kind := u32(stack[0])
	if st := writable(h, kind); st != statusOK {
		stack[0] = st
		return
	}
	k, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	switch {
	case len(k) == 0 || k[0] == ':':
		stack[0] = statusBadArgument // pseudo-headers cannot be removed
		return
	case owned(k) || (kind == mapRequestHeaders && httpsyntax.EqualFold(k, "host")):
	case isTrailerMap(kind):
		if t, chunked := trailersOf(h, kind); chunked {
			removeTrailer(t, k)
		}
	case kind == mapRequestHeaders:
		h.c.Request.Header.DelBytes(k)
	default:
		anycase.Del(&h.c.Response.Header, k)
	}
	stack[0] = statusOK
}

// An upstream's response keeps its fields in the case they were sent in, while proxy-wasm
// guests name fields in lowercase: response fields are found, replaced and removed in any case
// (plugins/internal/anycase).

// proxySetHeaderMapPairs replaces every field of a map (the gateway's own fields stay).
func proxySetHeaderMapPairs(ctx context.Context, mod api.Module, stack []uint64) {
	h := vmOf(ctx).cur
	kind := u32(stack[0])
	if st := writable(h, kind); st != statusOK {
		stack[0] = st
		return
	}
	raw, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	pairs, ok := parsePairs(raw)
	if !ok {
		stack[0] = statusBadArgument
		return
	}
	for _, kv := range pairs {
		if !validField(kv[0], kv[1]) {
			stack[0] = statusBadArgument
			return
		}
	}
	var names [][]byte
	visit := func(k, _ []byte) {
		if !owned(k) && !httpsyntax.EqualFold(k, "host") {
			names = append(names, append([]byte(nil), k...))
		}
	}
	switch kind {
	case mapRequestTrailers, mapResponseTrailer:
		if t, chunked := trailersOf(h, kind); chunked {
			clearTrailers(t)
		}
	case mapRequestHeaders:
		h.c.Request.Header.VisitAll(visit)
		for _, k := range names {
			h.c.Request.Header.DelBytes(k)
		}
	default:
		h.c.Response.Header.VisitAll(visit)
		for _, k := range names {
			h.c.Response.Header.DelBytes(k)
		}
	}
	for _, kv := range pairs {
		if st := writeField(h, kind, kv[0], kv[1], true); st != statusOK {
			stack[0] = st
			return
		}
	}
	stack[0] = statusOK
}

var _ = fasthttp.StatusOK
