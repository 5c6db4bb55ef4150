package proxywasm

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/plugins/httpwasm"
)

// Host functions answer a guest's misuse (a bad pointer, a missing context, an unknown type)
// with the ABI's status, as Envoy does, rather than trapping: proxy-wasm SDKs check statuses.
// Only a fault inside the guest's own allocator, called to return data, aborts the callback.

func vmOf(ctx context.Context) *vm {
	v, _ := ctx.Value(stateKey{}).(*vm)
	if v == nil {
		// Host functions are only reachable from guest calls the host made with the state.
		panic("proxywasm: host function called without instance state")
	}
	return v
}

func u32(x uint64) uint32 { return uint32(x) }

// view returns guest memory [ptr, ptr+n), valid until the guest runs again.
func view(mod api.Module, ptr, n uint32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	return mod.Memory().Read(ptr, n)
}

func writeU32(mod api.Module, ptr, v uint32) bool { return mod.Memory().WriteUint32Le(ptr, v) }

// allocate reserves n bytes in guest memory through the guest's allocator and returns them.
func (v *vm) allocate(ctx context.Context, mod api.Module, n uint32) (uint32, []byte, bool) {
	v.allocStack[0] = uint64(n)
	if err := v.alloc.CallWithStack(ctx, v.allocStack[:]); err != nil {
		panic(err) // the guest's allocator trapped: the callback fails with it
	}
	ptr := u32(v.allocStack[0])
	if n == 0 {
		return ptr, nil, true
	}
	if ptr == 0 {
		return 0, nil, false
	}
	b, ok := mod.Memory().Read(ptr, n)
	return ptr, b, ok
}

// give hands data to the guest: a copy in memory from its allocator, whose address and size
// go to retPtr and retSize. Empty data is returned as a null pointer and zero size.
func (v *vm) give(ctx context.Context, mod api.Module, data []byte, retPtr, retSize uint32) uint64 {
	if _, ok := view(mod, retPtr, 4); !ok {
		return statusInvalidMemoryAccess
	}
	if _, ok := view(mod, retSize, 4); !ok {
		return statusInvalidMemoryAccess
	}
	var ptr uint32
	if len(data) > 0 {
		p, b, ok := v.allocate(ctx, mod, uint32(len(data)))
		if !ok {
			return statusInvalidMemoryAccess
		}
		copy(b, data)
		ptr = p
	}
	if !writeU32(mod, retPtr, ptr) || !writeU32(mod, retSize, uint32(len(data))) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// --- logging, clocks, timers -----------------------------------------------------------------

// proxy_log_level_t to zerolog. CRITICAL logs at error: zerolog's fatal would exit.
func logLevel(l uint32) (zerolog.Level, bool) {
	switch l {
	case 0:
		return zerolog.TraceLevel, true
	case 1:
		return zerolog.DebugLevel, true
	case 2:
		return zerolog.InfoLevel, true
	case 3:
		return zerolog.WarnLevel, true
	case 4, 5:
		return zerolog.ErrorLevel, true
	}
	return zerolog.NoLevel, false
}

func proxyLog(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	lvl, ok := logLevel(u32(stack[0]))
	if !ok {
		stack[0] = statusBadArgument
		return
	}
	msg, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if ev := v.p.log.WithLevel(lvl); ev != nil {
		if len(msg) > httpwasm.MaxLogLen {
			msg = msg[:httpwasm.MaxLogLen]
		}
		ev.Str("source", "guest").Bytes("message", msg).Send()
	}
	stack[0] = statusOK
}

func proxyGetLogLevel(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	l := max(v.p.log.GetLevel(), zerolog.GlobalLevel())
	var pl uint32
	switch {
	case l <= zerolog.TraceLevel:
		pl = 0
	case l == zerolog.DebugLevel:
		pl = 1
	case l == zerolog.InfoLevel:
		pl = 2
	case l == zerolog.WarnLevel:
		pl = 3
	case l == zerolog.ErrorLevel:
		pl = 4
	default:
		pl = 5
	}
	if !writeU32(mod, u32(stack[0]), pl) {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = statusOK
}

func proxyGetCurrentTime(_ context.Context, mod api.Module, stack []uint64) {
	if !mod.Memory().WriteUint64Le(u32(stack[0]), uint64(time.Now().UnixNano())) {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = statusOK
}

func proxySetTickPeriod(ctx context.Context, _ api.Module, stack []uint64) {
	v := vmOf(ctx)
	if v.cur != nil {
		stack[0] = statusBadArgument // timers belong to the root context
		return
	}
	v.setTick(u32(stack[0]))
	stack[0] = statusOK
}

// --- contexts ----------------------------------------------------------------------------------

// proxySetEffectiveContext makes later calls act on another context of the instance: the root
// context, or an HTTP context whose request is paused (one that is running elsewhere, for
// example waiting for its upstream, is not the guest's to touch).
func proxySetEffectiveContext(ctx context.Context, _ api.Module, stack []uint64) {
	v := vmOf(ctx)
	id := u32(stack[0])
	if id == rootID {
		v.cur = nil
		stack[0] = statusOK
		return
	}
	h, ok := v.contexts[id]
	if !ok || (!h.paused && h != v.cur) {
		stack[0] = statusBadArgument
		return
	}
	v.cur = h
	stack[0] = statusOK
}

// proxyDone: proxy_on_done is always treated as complete, so there is nothing to finish.
func proxyDone(_ context.Context, _ api.Module, stack []uint64) { stack[0] = statusOK }

func proxyGetConfiguration(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	stack[0] = v.give(ctx, mod, v.buffer(v.configBuffer), u32(stack[0]), u32(stack[1]))
}

func proxyCallForeignFunction(_ context.Context, _ api.Module, stack []uint64) {
	stack[0] = statusNotFound // no foreign functions are registered
}

// --- buffers -----------------------------------------------------------------------------------

// buffer returns a readable buffer of the effective context, or nil.
func (v *vm) buffer(kind int) []byte {
	switch kind {
	case bufferVMConfiguration:
		return nil // Weir has no VM configuration
	case bufferPluginConfig:
		return v.p.spec.Config
	case bufferHTTPCallResponse:
		if v.callResp == nil {
			return nil
		}
		return v.callResp.Body()
	}
	h := v.cur
	if h == nil {
		return nil
	}
	switch kind {
	case bufferRequestBody:
		if h.c.Request.IsBodyStream() {
			return nil
		}
		return h.c.Request.Body()
	case bufferResponseBody:
		if !h.response || h.c.Response.IsBodyStream() {
			return nil
		}
		return h.c.Response.Body()
	}
	return nil
}

func knownBuffer(kind uint32) bool {
	switch kind {
	case bufferRequestBody, bufferResponseBody, bufferVMConfiguration, bufferPluginConfig, bufferHTTPCallResponse:
		return true
	}
	return false
}

func proxyGetBufferBytes(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	kind, start, maxSize := u32(stack[0]), u32(stack[1]), u32(stack[2])
	if !knownBuffer(kind) {
		stack[0] = statusNotFound
		return
	}
	if (kind == bufferRequestBody || kind == bufferResponseBody) && v.cur == nil {
		stack[0] = statusNotFound
		return
	}
	b := v.buffer(int(kind))
	if int64(start) > int64(len(b)) {
		stack[0] = statusBadArgument
		return
	}
	b = b[start:]
	if uint64(maxSize) < uint64(len(b)) {
		b = b[:maxSize]
	}
	stack[0] = v.give(ctx, mod, b, u32(stack[3]), u32(stack[4]))
}

func proxyGetBufferStatus(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	kind := u32(stack[0])
	if !knownBuffer(kind) {
		stack[0] = statusNotFound
		return
	}
	b := v.buffer(int(kind))
	if !writeU32(mod, u32(stack[1]), uint32(len(b))) || !writeU32(mod, u32(stack[2]), 0) {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	stack[0] = statusOK
}

// proxySetBufferBytes replaces [start, start+size) of a body with the given bytes: (0, 0)
// prepends, (0, len) replaces the whole body, (len, 0) appends. The result obeys the plugin's
// max_body_bytes.
func proxySetBufferBytes(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	kind, start, size := u32(stack[0]), u32(stack[1]), u32(stack[2])
	h := v.cur
	if kind != bufferRequestBody && kind != bufferResponseBody {
		if knownBuffer(kind) {
			stack[0] = statusBadArgument // configurations are read-only
		} else {
			stack[0] = statusNotFound
		}
		return
	}
	if h == nil || (kind == bufferRequestBody && h.response) || (kind == bufferResponseBody && !h.response) {
		stack[0] = statusBadArgument
		return
	}
	data, ok := view(mod, u32(stack[3]), u32(stack[4]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	var old []byte
	if kind == bufferRequestBody {
		old = h.c.Request.Body()
	} else {
		old = h.c.Response.Body()
	}
	s := min(int(start), len(old))
	e := min(s+int(size), len(old))
	if int(size) > len(old) {
		e = len(old)
	}
	n := s + len(data) + len(old) - e
	if n > v.p.spec.MaxBodyBytes {
		stack[0] = statusBadArgument
		return
	}
	nb := make([]byte, 0, n)
	nb = append(append(append(nb, old[:s]...), data...), old[e:]...)
	if kind == bufferRequestBody {
		h.c.Request.SetBodyRaw(nb)
	} else {
		h.c.Response.SetBodyRaw(nb)
	}
	stack[0] = statusOK
}

// --- streams -----------------------------------------------------------------------------------

func proxyContinueStream(ctx context.Context, _ api.Module, stack []uint64) {
	switch u32(stack[0]) {
	case streamRequest, streamResponse:
		stack[0] = resume(vmOf(ctx))
	default:
		stack[0] = statusUnimplemented // TCP streams
	}
}

func proxyContinueRequest(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = resume(vmOf(ctx))
}

func proxyContinueResponse(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = resume(vmOf(ctx))
}

func resume(v *vm) uint64 {
	if v.cur == nil {
		return statusBadArgument
	}
	v.cur.signal()
	return statusOK
}

// proxyCloseStream ends the request: the client gets a 502 and its connection is closed, the
// nearest an HTTP/1 gateway comes to resetting a stream.
func proxyCloseStream(ctx context.Context, _ api.Module, stack []uint64) {
	v := vmOf(ctx)
	switch u32(stack[0]) {
	case streamRequest, streamResponse:
	default:
		stack[0] = statusUnimplemented
		return
	}
	if v.cur == nil {
		stack[0] = statusBadArgument
		return
	}
	v.cur.local = &localReply{status: fasthttp.StatusBadGateway, closeConn: true}
	v.cur.signal()
	stack[0] = statusOK
}

// proxySendLocalResponse answers the request from the plugin. Statuses are final ones
// (200–599); headers obey the rules of a client's: tokens for names, no control bytes in
// values, and none of the headers that frame the message or belong to one connection (those
// are dropped: the gateway frames every message itself).
func proxySendLocalResponse(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	h := v.cur
	if h == nil {
		stack[0] = statusBadArgument
		return
	}
	status := int(u32(stack[0]))
	if status < 200 || status > 599 {
		stack[0] = statusBadArgument
		return
	}
	body, ok := view(mod, u32(stack[3]), u32(stack[4]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if len(body) > v.p.spec.MaxBodyBytes {
		stack[0] = statusBadArgument
		return
	}
	raw, ok := view(mod, u32(stack[5]), u32(stack[6]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	pairs, ok := parsePairs(raw)
	if !ok {
		stack[0] = statusBadArgument
		return
	}
	lr := &localReply{status: status, body: append([]byte(nil), body...)}
	for _, kv := range pairs {
		if !validField(kv[0], kv[1]) {
			stack[0] = statusBadArgument
			return
		}
		if httpsyntax.IsFraming(kv[0]) || httpsyntax.IsHopByHop(kv[0]) || kv[0][0] == ':' {
			continue
		}
		lr.headers = append(lr.headers, [2][]byte{append([]byte(nil), kv[0]...), append([]byte(nil), kv[1]...)})
	}
	h.local = lr
	h.signal()
	stack[0] = statusOK
}

// apply writes the local reply as the response, replacing whatever was there.
func (lr *localReply) apply(resp *fasthttp.Response) {
	closeConn := resp.ConnectionClose() || lr.closeConn
	resp.Reset()
	if closeConn {
		resp.SetConnectionClose()
	}
	resp.SetStatusCode(lr.status)
	for _, kv := range lr.headers {
		resp.Header.AddBytesKV(kv[0], kv[1])
	}
	resp.SetBodyRaw(lr.body)
}

// --- helpers -----------------------------------------------------------------------------------

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
