package proxywasm

import (
	"context"
	"strconv"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/plugins/internal/anycase"
)

// HTTP callouts: proxy_http_call sends a request of the guest's own to an upstream named in the
// config (the ABI's "cluster" is the upstream's name; nothing else can be reached), through
// that upstream's pool, balancer and health checks. The call runs on a goroutine of its own
// and holds no lock: the request that made it is typically paused meanwhile, and the
// instance serves other requests. The answer arrives in proxy_on_http_call_response on the
// root context (context id 1, as in Envoy, whose SDKs then make the calling HTTP context
// effective), with the response's headers (map 6, :status first), body (buffer 4) and no
// trailers (map 7, empty); a failed call (no target, refused, timed out, body over
// max_body_bytes) answers with no headers and no body.

// maxCallouts bounds one instance's callouts in flight; past it proxy_http_call answers
// BadArgument.
const maxCallouts = 1024

// callMap reports whether kind is a callout response's map.
func callMap(kind uint32) bool {
	return kind == mapHTTPCallResponseHeaders || kind == mapHTTPCallResponseTrailers
}

// callers returns the upstreams the effective context may call: its request's snapshot's,
// or for the root context those of the snapshot that built the plugin's latest filter.
func (v *vm) callers() filter.Upstreams {
	if h := v.cur; h != nil {
		return h.f.upstreams
	}
	if f := v.p.latest.Load(); f != nil {
		return f.upstreams
	}
	return nil
}

func proxyHTTPCall(ctx context.Context, mod api.Module, stack []uint64) {
	v := vmOf(ctx)
	name, ok := view(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	rawHeaders, ok := view(mod, u32(stack[2]), u32(stack[3]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	body, ok := view(mod, u32(stack[4]), u32(stack[5]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	if _, ok := view(mod, u32(stack[6]), u32(stack[7])); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	timeout := time.Duration(u32(stack[8])) * time.Millisecond
	retID := u32(stack[9])
	if _, ok := view(mod, retID, 4); !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	var caller filter.Caller
	if ups := v.callers(); ups != nil {
		caller, ok = ups.Upstream(string(name))
	}
	if caller == nil || !ok || len(body) > v.p.spec.MaxBodyBytes || v.callouts >= maxCallouts {
		stack[0] = statusBadArgument
		return
	}
	pairs, ok := parsePairs(rawHeaders)
	if !ok {
		stack[0] = statusBadArgument
		return
	}
	req := fasthttp.AcquireRequest()
	if st := calloutRequest(req, pairs); st != statusOK {
		fasthttp.ReleaseRequest(req)
		stack[0] = st
		return
	}
	if len(body) > 0 {
		req.SetBody(body) // a copy: guest memory changes once the guest runs again
	}
	if timeout <= 0 || timeout > PauseTimeout {
		timeout = PauseTimeout
	}
	v.nextCallout++
	if v.nextCallout == 0 {
		v.nextCallout = 1
	}
	id := v.nextCallout
	v.callouts++
	writeU32(mod, retID, id)
	go v.callout(caller, string(name), req, timeout, id)
	stack[0] = statusOK
}

// calloutRequest fills req from the guest's header map: :method, :path and :authority are
// required (a missing one is BadArgument, as in Envoy), :scheme is the upstream's business;
// framing and hop-by-hop fields are dropped, since the gateway frames the request.
func calloutRequest(req *fasthttp.Request, pairs [][2][]byte) uint64 {
	var method, path, authority bool
	for _, kv := range pairs {
		k, val := kv[0], kv[1]
		if !validField(k, val) {
			return statusBadArgument
		}
		switch {
		case string(k) == ":method":
			if !httpsyntax.IsToken(val) {
				return statusBadArgument
			}
			req.Header.SetMethodBytes(val)
			method = true
		case string(k) == ":path":
			if !validPath(val) {
				return statusBadArgument
			}
			req.SetRequestURIBytes(val)
			path = true
		case string(k) == ":authority":
			if !validAuthority(val) {
				return statusBadArgument
			}
			req.Header.SetHostBytes(val)
			authority = true
		case string(k) == ":scheme":
		case k[0] == ':':
			return statusBadArgument
		case owned(k), httpsyntax.EqualFold(k, "host"):
		default:
			req.Header.AddBytesKV(k, val)
		}
	}
	if !method || !path || !authority {
		return statusBadArgument
	}
	return statusOK
}

// callout sends req and hands the answer to the guest's proxy_on_http_call_response.
func (v *vm) callout(caller filter.Caller, upstream string, req *fasthttp.Request, timeout time.Duration, id uint32) {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	err := caller.Call(req, resp, timeout, v.p.spec.MaxBodyBytes)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		v.p.log.Warn().Err(err).Str("upstream", upstream).Msg("plugin http callout failed")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.callouts--
	if v.dead.Load() || v.onHTTPCallResponse == nil {
		return
	}
	var headers, size uint64
	if err == nil {
		v.callResp = resp
		headers = 1 // :status
		resp.Header.VisitAll(func(_, _ []byte) { headers++ })
		size = uint64(len(resp.Body()))
	}
	_, _ = v.call(nil, v.onHTTPCallResponse, rootID, uint64(id), headers, size, 0)
	v.callResp = nil
}

// callFields calls fn for each field of the callout response's map kind.
func (v *vm) callFields(kind uint32, fn func(k, val []byte)) bool {
	r := v.callResp
	if r == nil {
		return false
	}
	if kind == mapHTTPCallResponseTrailers {
		return true // trailers are not read: always empty
	}
	v.scratch = strconv.AppendInt(v.scratch[:0], int64(r.StatusCode()), 10)
	fn([]byte(":status"), v.scratch)
	r.Header.VisitAll(fn)
	return true
}

// proxyGetCallHeaderValue is proxy_get_header_map_value for a callout response's maps.
func proxyGetCallHeaderValue(ctx context.Context, v *vm, mod api.Module, stack []uint64) {
	r := v.callResp
	if r == nil || u32(stack[0]) != mapHTTPCallResponseHeaders {
		stack[0] = statusNotFound
		return
	}
	key, ok := view(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		stack[0] = statusInvalidMemoryAccess
		return
	}
	var val []byte
	if string(key) == ":status" {
		v.scratch = strconv.AppendInt(v.scratch[:0], int64(r.StatusCode()), 10)
		val = v.scratch
	} else if val = anycase.Peek(&r.Header, key); val == nil {
		stack[0] = statusNotFound
		return
	}
	stack[0] = v.give(ctx, mod, val, u32(stack[3]), u32(stack[4]))
}
