package httpwasm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Trap is the value a host function panics with when the guest misuses the ABI; wazero turns
// the panic into an error from the guest call, which discards the instance.
type Trap struct {
	Func string
	Msg  string
	// Status, when not zero, is the answer the request gets whatever the plugin's fail policy:
	// the request or response itself is over a limit (413, 502), not the plugin at fault, and
	// a body already partly read cannot be handed on as if the plugin were not there.
	Status int
}

func (t *Trap) Error() string { return ModuleName + "." + t.Func + ": " + t.Msg }

// Traps that carry no data are built once, so a trapping path does not allocate either.
var (
	errNoState = &Trap{Func: "*", Msg: "called with no plugin state (host bug)"}
)

func trap(fn, format string, args ...any) *Trap {
	return &Trap{Func: fn, Msg: fmt.Sprintf(format, args...)}
}

// Signature is one host function's parameter and result types.
type Signature struct {
	Params, Results []api.ValueType
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

type hostFunc struct {
	name string
	sig  Signature
	fn   api.GoModuleFunc
}

// functions is the whole ABI, in the specification's order.
var functions = []hostFunc{
	{"enable_features", Signature{[]api.ValueType{i32}, []api.ValueType{i32}}, enableFeatures},
	{"get_config", Signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, getConfig},
	{"log_enabled", Signature{[]api.ValueType{i32}, []api.ValueType{i32}}, logEnabled},
	{"log", Signature{[]api.ValueType{i32, i32, i32}, nil}, logFn},
	{"get_method", Signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, getMethod},
	{"set_method", Signature{[]api.ValueType{i32, i32}, nil}, setMethod},
	{"get_uri", Signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, getURI},
	{"set_uri", Signature{[]api.ValueType{i32, i32}, nil}, setURI},
	{"get_protocol_version", Signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, getProtocolVersion},
	{"get_header_names", Signature{[]api.ValueType{i32, i32, i32}, []api.ValueType{i64}}, getHeaderNames},
	{"get_header_values", Signature{[]api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i64}}, getHeaderValues},
	{"set_header_value", Signature{[]api.ValueType{i32, i32, i32, i32, i32}, nil}, setHeaderValue},
	{"add_header_value", Signature{[]api.ValueType{i32, i32, i32, i32, i32}, nil}, addHeaderValue},
	{"remove_header", Signature{[]api.ValueType{i32, i32, i32}, nil}, removeHeader},
	{"read_body", Signature{[]api.ValueType{i32, i32, i32}, []api.ValueType{i64}}, readBody},
	{"write_body", Signature{[]api.ValueType{i32, i32, i32}, nil}, writeBody},
	{"get_status_code", Signature{nil, []api.ValueType{i32}}, getStatusCode},
	{"set_status_code", Signature{[]api.ValueType{i32}, nil}, setStatusCode},
	{"get_source_addr", Signature{[]api.ValueType{i32, i32}, []api.ValueType{i32}}, getSourceAddr},
}

// Functions returns every host function's signature by name (for import checks and
// `weir plugin inspect`).
func Functions() map[string]Signature {
	m := make(map[string]Signature, len(functions))
	for _, f := range functions {
		m[f.name] = f.sig
	}
	return m
}

// Instantiate registers the http_handler host module in r.
func Instantiate(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(ModuleName)
	for _, f := range functions {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.sig.Params, f.sig.Results).Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate %s host module: %w", ModuleName, err)
	}
	return nil
}

// --- guest memory -------------------------------------------------------------------------

// read returns a view of guest memory [ptr, ptr+n); out of bounds traps. The view is valid only
// until the guest runs again, so callers copy (fasthttp's setters do).
func read(fn string, mod api.Module, ptr, n uint32) []byte {
	mem := mod.Memory()
	if mem == nil {
		panic(&Trap{Func: fn, Msg: "guest exports no memory"})
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		panic(trap(fn, "out of bounds memory access: %d bytes at %d (memory is %d bytes)", n, ptr, mem.Size()))
	}
	return b
}

// writeIfFits writes v at buf when it fits limit and returns len(v) either way, as every get_*
// function of the ABI does.
func writeIfFits(fn string, mod api.Module, buf, limit uint32, v []byte) uint32 {
	n := uint32(len(v))
	if n > limit || n == 0 {
		return n
	}
	mem := mod.Memory()
	if mem == nil {
		panic(&Trap{Func: fn, Msg: "guest exports no memory"})
	}
	if !mem.Write(buf, v) {
		panic(trap(fn, "out of bounds memory access: %d bytes at %d (memory is %d bytes)", n, buf, mem.Size()))
	}
	return n
}

// b2s views b as a string without copying, for fasthttp calls that copy or only compare.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func u32(v uint64) uint32 { return uint32(v) }

// --- administrative -----------------------------------------------------------------------

func enableFeatures(ctx context.Context, _ api.Module, stack []uint64) {
	s := stateOf(ctx)
	f := Feature(u32(stack[0])) & Supported
	if s.phase == PhaseNone {
		s.base |= f
		s.features |= f
	} else {
		s.features |= f
	}
	stack[0] = uint64(Supported)
}

func getConfig(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	stack[0] = uint64(writeIfFits("get_config", mod, u32(stack[0]), u32(stack[1]), s.Config))
}

func zerologLevel(level int32) (zerolog.Level, bool) {
	switch {
	case level <= LogDebug:
		return zerolog.DebugLevel, true
	case level == LogInfo:
		return zerolog.InfoLevel, true
	case level == LogWarn:
		return zerolog.WarnLevel, true
	case level == LogError:
		return zerolog.ErrorLevel, true
	}
	return zerolog.NoLevel, false
}

func logEnabled(ctx context.Context, _ api.Module, stack []uint64) {
	s := stateOf(ctx)
	lvl, ok := zerologLevel(int32(u32(stack[0])))
	if ok && lvl >= s.Log.GetLevel() && lvl >= zerolog.GlobalLevel() {
		stack[0] = 1
	} else {
		stack[0] = 0
	}
}

func logFn(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	lvl, ok := zerologLevel(int32(u32(stack[0])))
	if !ok {
		return
	}
	ev := s.Log.WithLevel(lvl)
	if ev == nil {
		return
	}
	// The ABI says a host that fails to log ignores the message rather than trapping.
	mem := mod.Memory()
	if mem == nil {
		ev.Discard()
		return
	}
	n := min(u32(stack[2]), MaxLogLen)
	msg, ok := mem.Read(u32(stack[1]), n)
	if !ok {
		ev.Discard()
		return
	}
	// zerolog copies the message into its buffer before Msg returns.
	ev.Str("source", "guest").Msg(b2s(msg))
}

// --- request ------------------------------------------------------------------------------

// request returns the current request, trapping outside one.
func (s *State) request(fn string) *fasthttp.RequestCtx {
	if s.rc == nil {
		panic(&Trap{Func: fn, Msg: "called outside handle_request/handle_response"})
	}
	return s.rc
}

// mutateRequest returns the request for a change, trapping in the response phase: by then the
// request has been sent upstream.
func (s *State) mutateRequest(fn string) *fasthttp.RequestCtx {
	rc := s.request(fn)
	if s.phase != PhaseRequest {
		panic(&Trap{Func: fn, Msg: "the request can no longer be changed in handle_response"})
	}
	return rc
}

// mutateResponse returns the response for a change. After next, that needs buffer_response,
// as the ABI says: without it the response may already be on its way to the client.
func (s *State) mutateResponse(fn string) *fasthttp.RequestCtx {
	rc := s.request(fn)
	switch {
	case s.phase == PhaseRequest:
		s.respTouched = true // kept across next: see Next
	case s.features&FeatureBufferResponse == 0:
		panic(&Trap{Func: fn, Msg: "changing the response in handle_response needs feature buffer_response"})
	}
	return rc
}

func getMethod(ctx context.Context, mod api.Module, stack []uint64) {
	rc := stateOf(ctx).request("get_method")
	stack[0] = uint64(writeIfFits("get_method", mod, u32(stack[0]), u32(stack[1]), rc.Request.Header.Method()))
}

func setMethod(ctx context.Context, mod api.Module, stack []uint64) {
	rc := stateOf(ctx).mutateRequest("set_method")
	n := u32(stack[1])
	if n == 0 || n > 64 {
		panic(trap("set_method", "method length %d (want 1..64)", n))
	}
	m := read("set_method", mod, u32(stack[0]), n)
	if !httpsyntax.IsToken(m) {
		panic(trap("set_method", "%q is not a valid method", m))
	}
	rc.Request.Header.SetMethodBytes(m)
}

// getURI writes the path and query as they will be sent upstream: percent-encoded exactly as
// received or as set (fasthttp's URI.RequestURI would decode "%26" and "%2F" and re-encode
// only some bytes, so a guest would see another resource than the upstream does).
func getURI(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	u := s.request("get_uri").Request.URI()
	s.scratch = append(s.scratch[:0], u.PathOriginal()...)
	if len(s.scratch) == 0 {
		s.scratch = append(s.scratch, '/')
	}
	if q := u.QueryString(); len(q) > 0 {
		s.scratch = append(s.scratch, '?')
		s.scratch = append(s.scratch, q...)
	}
	stack[0] = uint64(writeIfFits("get_uri", mod, u32(stack[0]), u32(stack[1]), s.scratch))
}

var slash = []byte("/")

func setURI(ctx context.Context, mod api.Module, stack []uint64) {
	rc := stateOf(ctx).mutateRequest("set_uri")
	n := u32(stack[1])
	if n > MaxFieldLen {
		panic(trap("set_uri", "uri length %d (want 0..%d)", n, MaxFieldLen))
	}
	if n == 0 {
		// As the reference host: an empty URI is "/".
		rc.Request.SetRequestURIBytes(slash)
		return
	}
	uri := read("set_uri", mod, u32(stack[0]), n)
	if uri[0] != '/' {
		panic(trap("set_uri", "uri %.64q does not start with \"/\"", uri))
	}
	// set_uri changes the path and query only. "//host/path" is a network-path reference to
	// many HTTP stacks (Go's net/url among them): it could carry an authority to whichever
	// component next parses the target, so it is refused rather than guessed at.
	if len(uri) > 1 && uri[1] == '/' {
		panic(trap("set_uri", "uri %.64q starts with \"//\" (an authority); set_uri takes a path and query only", uri))
	}
	for _, c := range uri {
		// The ABI requires an encoded URI; a space or control byte would split the request line.
		if c <= ' ' || c == 0x7f {
			panic(trap("set_uri", "uri %.64q has a byte that must be percent-encoded", uri))
		}
	}
	rc.Request.SetRequestURIBytes(uri)
}

var (
	http11 = []byte("HTTP/1.1")
	http10 = []byte("HTTP/1.0")
)

// getProtocolVersion reports the client's protocol, in both phases: the request sent upstream
// is always HTTP/1.1 (see core/proxy), but the guest is told what the client spoke.
func getProtocolVersion(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	s.request("get_protocol_version")
	p := http11
	if s.http10 {
		p = http10
	}
	stack[0] = uint64(writeIfFits("get_protocol_version", mod, u32(stack[0]), u32(stack[1]), p))
}

func getSourceAddr(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	rc := s.request("get_source_addr")
	s.scratch = s.scratch[:0]
	switch a := rc.RemoteAddr().(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		s.scratch = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(s.scratch)
	default:
		s.scratch = append(s.scratch, a.String()...)
	}
	stack[0] = uint64(writeIfFits("get_source_addr", mod, u32(stack[0]), u32(stack[1]), s.scratch))
}

// --- response status ----------------------------------------------------------------------

func getStatusCode(ctx context.Context, _ api.Module, stack []uint64) {
	rc := stateOf(ctx).request("get_status_code")
	stack[0] = uint64(uint32(rc.Response.StatusCode()))
}

func setStatusCode(ctx context.Context, _ api.Module, stack []uint64) {
	s := stateOf(ctx)
	rc := s.mutateResponse("set_status_code")
	code := int32(u32(stack[0]))
	// Only final statuses, as the respond filter: a 1xx sent as the answer would leave the
	// client waiting for the real one and desync the connection.
	if code < 200 || code > 599 {
		panic(trap("set_status_code", "status %d is not a final status (200..599)", code))
	}
	rc.Response.SetStatusCode(int(code))
	if s.phase == PhaseRequest {
		s.statusSet = true
	}
}

// --- bodies -------------------------------------------------------------------------------

// requestBody returns the whole request body, reading a streamed body into memory first so
// that the next handler (and a later read) still sees all of it. A body over the plugin's
// max_body_bytes answers 413: the host reads at most one byte past the limit to know.
func (s *State) requestBody(fn string) []byte {
	req := &s.request(fn).Request
	limit := s.bodyLimit()
	if req.IsBodyStream() {
		if cl := req.Header.ContentLength(); cl > limit {
			panic(tooLarge(fn, fasthttp.StatusRequestEntityTooLarge, "request body", limit))
		}
		b, err := readLimited(req.BodyStream(), limit)
		switch {
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			// Over the server's max_body_bytes, which is below the plugin's limit.
			panic(&Trap{Func: fn, Msg: "read request body: " + err.Error(), Status: fasthttp.StatusRequestEntityTooLarge})
		case err != nil:
			panic(trap(fn, "read request body: %v", err))
		case len(b) > limit:
			panic(tooLarge(fn, fasthttp.StatusRequestEntityTooLarge, "request body", limit))
		}
		req.SetBody(b)
	}
	body := req.Body()
	if len(body) > limit {
		panic(tooLarge(fn, fasthttp.StatusRequestEntityTooLarge, "request body", limit))
	}
	return body
}

// responseBody returns the whole response body for a read in handle_response with
// buffer_response, reading a streamed upstream body into memory first. A body over the plugin's
// max_body_bytes answers 502: the upstream's answer cannot be passed through the plugin.
func (s *State) responseBody(fn string) []byte {
	resp := &s.request(fn).Response
	limit := s.bodyLimit()
	if resp.IsBodyStream() {
		if cl := resp.Header.ContentLength(); cl > limit {
			panic(tooLarge(fn, fasthttp.StatusBadGateway, "response body", limit))
		}
		b, err := readLimited(resp.BodyStream(), limit)
		switch {
		case err != nil:
			panic(&Trap{Func: fn, Msg: "read response body: " + err.Error(), Status: fasthttp.StatusBadGateway})
		case len(b) > limit:
			panic(tooLarge(fn, fasthttp.StatusBadGateway, "response body", limit))
		}
		resp.SetBody(b)
	}
	body := resp.Body()
	if len(body) > limit {
		panic(tooLarge(fn, fasthttp.StatusBadGateway, "response body", limit))
	}
	return body
}

// readLimited reads r to its end, or to one byte past limit.
func readLimited(r io.Reader, limit int) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, int64(limit)+1))
}

func tooLarge(fn string, status int, what string, limit int) *Trap {
	return &Trap{Func: fn, Msg: fmt.Sprintf("%s over the plugin's max_body_bytes (%d)", what, limit), Status: status}
}

func readBody(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind, buf, limit := u32(stack[0]), u32(stack[1]), u32(stack[2])
	if limit == 0 {
		panic(&Trap{Func: "read_body", Msg: "buf_limit is zero"})
	}
	var body []byte
	var off *int
	switch kind {
	case BodyRequest:
		body, off = s.requestBody("read_body"), &s.reqBodyOff
	case BodyResponse:
		rc := s.request("read_body")
		if s.phase == PhaseResponse && s.features&FeatureBufferResponse == 0 {
			// Without buffering the ABI lets the host report the body as already consumed.
			stack[0] = 1 << 32
			return
		}
		if s.phase == PhaseResponse {
			body = s.responseBody("read_body")
		} else {
			body = rc.Response.Body() // what the guest wrote itself, within its write limit
		}
		off = &s.respBodyOff
	default:
		panic(trap("read_body", "unknown body kind %d", kind))
	}
	rest := body[min(*off, len(body)):]
	n := min(uint32(len(rest)), limit)
	if n > 0 {
		if !mod.Memory().Write(buf, rest[:n]) {
			panic(trap("read_body", "out of bounds memory access: %d bytes at %d", n, buf))
		}
	}
	*off += int(n)
	var eof uint64
	if *off >= len(body) {
		eof = 1
	}
	stack[0] = eof<<32 | uint64(n)
}

func writeBody(ctx context.Context, mod api.Module, stack []uint64) {
	s := stateOf(ctx)
	kind, ptr, n := u32(stack[0]), u32(stack[1]), u32(stack[2])
	if limit := s.bodyLimit(); s.wrote+int(n) > limit {
		panic(trap("write_body", "more than %d bytes written to bodies in one request (the plugin's max_body_bytes)", limit))
	}
	switch kind {
	case BodyRequest:
		rc := s.mutateRequest("write_body")
		b := read("write_body", mod, ptr, n)
		if !s.reqBodyWrote {
			rc.Request.SetBody(b)
			s.reqBodyWrote = true
		} else {
			rc.Request.AppendBody(b)
		}
	case BodyResponse:
		rc := s.mutateResponse("write_body")
		b := read("write_body", mod, ptr, n)
		if !s.respBodyWrote {
			rc.Response.SetBody(b)
			s.respBodyWrote = true
		} else {
			rc.Response.AppendBody(b)
		}
	default:
		panic(trap("write_body", "unknown body kind %d", kind))
	}
	s.wrote += int(n)
}

// Trap is an error, so the wasm host's fault accounting finds it with errors.As.
var _ error = (*Trap)(nil)
