package proxywasm

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/plugins/wasmhost"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

//go:embed testdata/filter.wasm
var filterWasm []byte

//go:embed testdata/v010.wasm
var v010Wasm []byte

// TestTestdataUpToDate rebuilds the committed guests from their WAT sources when wat2wasm is
// installed (Debian: wabt) and fails when a .wasm is stale.
func TestTestdataUpToDate(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm not installed")
	}
	for _, name := range []string{"filter", "v010", "addheader", "callout", "trailers"} {
		out := filepath.Join(t.TempDir(), name+".wasm")
		if b, err := exec.Command("wat2wasm", filepath.Join("testdata", name+".wat"), "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", name, err, b)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(filepath.Join("testdata", name+".wasm"))
		if !bytes.Equal(got, want) {
			t.Errorf("testdata/%s.wasm is stale: run wat2wasm testdata/%s.wat -o testdata/%s.wasm", name, name, name)
		}
	}
}

type pluginOpts struct {
	wasm     []byte
	config   string
	failOpen bool
	timeout  time.Duration
	poolMin  int
}

func newFilter(t testing.TB, name string, o pluginOpts) filter.Filter {
	t.Helper()
	if o.config == "" {
		o.config = "{}"
	}
	env := filter.Env{Route: "r", Filter: name, Shared: filter.NewShared(), Log: zerolog.Nop()}
	f, err := filter.LoadPlugin(env, filter.PluginSpec{
		Name: name, Wasm: o.wasm, Config: []byte(o.config), CacheDir: "off",
		FailOpen: o.failOpen, Timeout: o.timeout, PoolMin: o.poolMin, PoolMax: 8,
	})
	if err != nil {
		t.Fatalf("LoadPlugin: %v", err)
	}
	if _, ok := f.(*Filter); !ok {
		t.Fatalf("LoadPlugin gave %T, want the proxy-wasm filter", f)
	}
	t.Cleanup(func() { _ = f.(*Filter).Close() })
	return f
}

type upstreamSaw struct {
	called  bool
	path    string
	headers map[string]string
}

// serve runs one request through a pipeline of f in front of an upstream that records what it
// got and answers "upstream body".
func serve(f filter.Filter, hdr map[string]string) (*fasthttp.Response, *upstreamSaw) {
	var rc fasthttp.RequestCtx
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/orig?q=1")
	req.Header.SetHost("example.com")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rc.Init(req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4242}, nil)
	c := &filter.Ctx{}
	c.Reset(&rc, "r")
	saw := &upstreamSaw{headers: map[string]string{}}
	p := filter.NewPipeline([]filter.Filter{f}, []string{"p"})
	p.Run(c, func(c *filter.Ctx) {
		saw.called = true
		saw.path = string(c.Request.RequestURI())
		c.Request.Header.VisitAll(func(k, v []byte) { saw.headers[string(k)] = string(v) })
		c.Response.SetStatusCode(200)
		c.Response.SetBodyString("upstream body")
	})
	resp := &fasthttp.Response{}
	rc.Response.CopyTo(resp)
	return resp, saw
}

func TestHeaderRewritesPathAndBody(t *testing.T) {
	f := newFilter(t, "pw-rewrite", pluginOpts{wasm: filterWasm})
	resp, saw := serve(f, map[string]string{"X-Remove": "1", "X-Keep": "2"})
	if !saw.called {
		t.Fatal("upstream not called")
	}
	for k, want := range map[string]string{"X-Added": "yes", "X-Keep": "2", "X-Remove": ""} {
		if got := saw.headers[k]; got != want {
			t.Errorf("upstream header %s = %q, want %q", k, got, want)
		}
	}
	if saw.path != "/rewritten" {
		t.Errorf("upstream path = %q, want /rewritten", saw.path)
	}
	if got := string(resp.Header.Peek("X-Resp")); got != "yes" {
		t.Errorf("response x-resp = %q, want yes", got)
	}
	if got := string(resp.Body()); got != "rewritten" {
		t.Errorf("response body = %q, want rewritten", got)
	}
}

func TestLocalReply(t *testing.T) {
	f := newFilter(t, "pw-local", pluginOpts{wasm: filterWasm})
	resp, saw := serve(f, map[string]string{"X-Reply": "1"})
	if saw.called {
		t.Error("upstream called despite the local reply")
	}
	if resp.StatusCode() != 418 || string(resp.Body()) != "teapot" || string(resp.Header.Peek("X-Local")) != "1" {
		t.Errorf("got %d %q x-local=%q, want 418 teapot 1", resp.StatusCode(), resp.Body(), resp.Header.Peek("X-Local"))
	}
}

func TestPauseResumedByTick(t *testing.T) {
	f := newFilter(t, "pw-pause", pluginOpts{wasm: filterWasm})
	start := time.Now()
	resp, saw := serve(f, map[string]string{"X-Pause": "1"})
	if !saw.called || saw.headers["X-Resumed"] != "yes" {
		t.Fatalf("upstream called=%v x-resumed=%q; want the tick to resume the request with x-resumed", saw.called, saw.headers["X-Resumed"])
	}
	if resp.StatusCode() != 200 {
		t.Errorf("status %d", resp.StatusCode())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("resume took %s", d)
	}
}

func TestPauseTimeout(t *testing.T) {
	old := PauseTimeout
	PauseTimeout = 50 * time.Millisecond
	defer func() { PauseTimeout = old }()
	// x-pause with no tick: v0.1.0's filter never pauses, so pause the rewrite filter with its
	// tick stopped.
	f := newFilter(t, "pw-pause-timeout", pluginOpts{wasm: filterWasm}).(*Filter)
	for _, s := range f.p.slots {
		v := s.v.Load()
		v.mu.Lock()
		v.setTick(0)
		v.mu.Unlock()
	}
	resp, saw := serve(f, map[string]string{"X-Pause": "1"})
	if saw.called || resp.StatusCode() != fasthttp.StatusGatewayTimeout {
		t.Errorf("upstream called=%v status=%d, want 504 without the upstream", saw.called, resp.StatusCode())
	}
}

func TestSharedDataCASAcrossInstances(t *testing.T) {
	const name, n = "pw-cas", 40
	f := newFilter(t, name, pluginOpts{wasm: filterWasm, poolMin: 4})
	if got := len(f.(*Filter).p.slots); got < 4 {
		t.Fatalf("%d instances, want 4", got)
	}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(f, map[string]string{"X-Cas": "1"})
		}()
	}
	wg.Wait()
	s := sharedFor(name)
	s.mu.Lock()
	e := s.data["shared-key"]
	s.mu.Unlock()
	if e == nil || binary.LittleEndian.Uint32(e.v) != n {
		t.Fatalf("shared counter = %v, want %d", e, n)
	}
}

func TestMetrics(t *testing.T) {
	const name = "pw-metrics"
	f := newFilter(t, name, pluginOpts{wasm: filterWasm})
	for range 3 {
		serve(f, nil)
	}
	if got := telemetry.Metrics.Group("plugins")[name]["guest.hits"]; got != 3 {
		t.Errorf("guest.hits = %d, want 3", got)
	}
}

func TestV010(t *testing.T) {
	cfg := `{"Key":"v"}` // 11 bytes: x-config-size carries its last digit
	f := newFilter(t, "pw-v010", pluginOpts{wasm: v010Wasm, config: cfg})
	if v := f.(*Filter).Version(); v != V010 {
		t.Errorf("version %q, want %s", v, V010)
	}
	_, saw := serve(f, nil)
	if saw.headers["X-V010"] != "yes" || saw.headers["X-Config-Size"] != "1" {
		t.Errorf("upstream headers %v; want x-v010: yes and x-config-size: 1", saw.headers)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		header string
		open   bool
		want   int
	}{
		{"trap closed", "X-Trap", false, 500},
		{"trap open", "X-Trap", true, 200},
		{"loop closed", "X-Loop", false, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilter(t, "pw-fault", pluginOpts{wasm: filterWasm, failOpen: tt.open, timeout: 50 * time.Millisecond})
			stats := f.(*Filter).p.c.Stats()
			before := stats.Discarded.Load()
			start := time.Now()
			resp, saw := serve(f, map[string]string{tt.header: "1"})
			if resp.StatusCode() != tt.want || saw.called != tt.open {
				t.Errorf("status %d upstream=%v, want %d upstream=%v", resp.StatusCode(), saw.called, tt.want, tt.open)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("fault answered after %s", d)
			}
			if stats.Discarded.Load() == before {
				t.Error("faulted instance not discarded")
			}
			// The next request gets a fresh instance and is served normally.
			for range len(f.(*Filter).p.slots) + 1 {
				resp, saw = serve(f, nil)
				if resp.StatusCode() != 200 || saw.headers["X-Added"] != "yes" {
					t.Fatalf("after the fault: status %d x-added=%q", resp.StatusCode(), saw.headers["X-Added"])
				}
			}
		})
	}
}

func TestLoadRefusals(t *testing.T) {
	noVersion := (&wasmtest.Module{MemMin: 1, MemMax: -1, Funcs: []wasmtest.Func{
		{Params: []byte{wasmtest.I32, wasmtest.I32}, Body: wasmtest.NewCode(), Export: "proxy_on_context_create"},
	}}).Encode()
	missing := (&wasmtest.Module{MemMin: 1, MemMax: -1,
		Imports: []wasmtest.Import{{Module: "env", Name: "proxy_no_such_call", Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}}},
		Funcs: []wasmtest.Func{
			{Body: wasmtest.NewCode(), Export: "proxy_abi_version_0_2_1"},
			{Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(0), Export: "proxy_on_memory_allocate"},
		}}).Encode()
	for _, tt := range []struct {
		name, want string
		wasm       []byte
		config     string
	}{
		{"no version export", "proxy_abi_version", noVersion, ""},
		{"missing import", "env.proxy_no_such_call", missing, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := filter.Env{Route: "r", Filter: "p", Shared: filter.NewShared(), Log: zerolog.Nop()}
			_, err := filter.LoadPlugin(env, filter.PluginSpec{Name: "pw-refuse", Wasm: tt.wasm, CacheDir: "off", PoolMax: 1})
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestEveryImportInstantiates builds a module importing every host function and every WASI
// function under both module names, and loads it.
func TestEveryImportInstantiates(t *testing.T) {
	m := &wasmtest.Module{MemMin: 1, MemMax: -1}
	conv := func(ts []api.ValueType) []byte {
		out := make([]byte, len(ts))
		for i, t := range ts {
			out[i] = byte(t)
		}
		return out
	}
	for _, f := range functions {
		m.Imports = append(m.Imports, wasmtest.Import{Module: "env", Name: f.name, Params: conv(f.sig.params), Results: conv(f.sig.results)})
	}
	m.Imports = append(m.Imports,
		wasmtest.Import{Module: "wasi_unstable", Name: "fd_write", Params: []byte{wasmtest.I32, wasmtest.I32, wasmtest.I32, wasmtest.I32}, Results: []byte{wasmtest.I32}},
		wasmtest.Import{Module: "wasi_snapshot_preview1", Name: "random_get", Params: []byte{wasmtest.I32, wasmtest.I32}, Results: []byte{wasmtest.I32}},
	)
	m.Funcs = []wasmtest.Func{
		{Body: wasmtest.NewCode(), Export: "proxy_abi_version_0_2_0"},
		{Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(1024), Export: "proxy_on_memory_allocate"},
	}
	newFilter(t, "pw-all-imports", pluginOpts{wasm: m.Encode()})
	// v0.2.1's 39, v0.1.0's four others (proxy_get_configuration, proxy_continue_request,
	// proxy_continue_response, proxy_clear_route_cache) and emscripten_notify_memory_growth.
	if got := len(functions); got != 44 {
		t.Errorf("%d host functions, want 44", got)
	}
}

// hostEnv gives direct access to one instance for host-function edge cases.
type hostEnv struct {
	v   *vm
	ctx context.Context
	mod api.Module
	h   *httpCtx
}

func newHostEnv(t *testing.T) *hostEnv {
	f := newFilter(t, "pw-host", pluginOpts{wasm: filterWasm}).(*Filter)
	v := f.p.slots[0].v.Load()
	v.mu.Lock()
	v.setTick(0) // the guest's timer would run callbacks beside the test's
	v.mu.Unlock()
	var rc fasthttp.RequestCtx
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/a?b=c")
	req.Header.SetHost("example.com")
	req.Header.Set("X-One", "1")
	rc.Init(req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5555}, nil)
	c := &filter.Ctx{}
	c.Reset(&rc, "route-a")
	h := &httpCtx{v: v, f: f, c: c, resume: make(chan struct{}, 1), headerBytes: 1 << 14}
	return &hostEnv{v: v, ctx: context.WithValue(context.Background(), stateKey{}, v), mod: v.g.Mod, h: h}
}

// put writes b into guest memory at a scratch address and returns it.
func (e *hostEnv) put(off uint32, b string) (uint64, uint64) {
	e.mod.Memory().Write(off, []byte(b))
	return uint64(off), uint64(len(b))
}

func (e *hostEnv) call(fn api.GoModuleFunc, args ...uint64) uint64 { return e.callIn(nil, fn, args...) }

// callIn calls a host function as a callback on context h (nil: the root context) would.
func (e *hostEnv) callIn(h *httpCtx, fn api.GoModuleFunc, args ...uint64) uint64 {
	stack := make([]uint64, max(len(args), 1))
	copy(stack, args)
	e.v.mu.Lock()
	defer e.v.mu.Unlock()
	e.v.cur = h
	fn(e.ctx, e.mod, stack)
	e.v.cur = nil
	return stack[0]
}

func (e *hostEnv) got(retPtr, retSize uint32) string {
	p, _ := e.mod.Memory().ReadUint32Le(retPtr)
	n, _ := e.mod.Memory().ReadUint32Le(retSize)
	b, _ := e.mod.Memory().Read(p, n)
	return string(b)
}

func TestHostFunctionEdgeCases(t *testing.T) {
	e := newHostEnv(t)
	const bad = 1 << 30 // past the guest's memory
	k, kn := e.put(3000, "x-one")
	ret, retSize := uint64(3100), uint64(3104)
	tests := []struct {
		name string
		h    *httpCtx
		fn   api.GoModuleFunc
		args []uint64
		want uint64
	}{
		{"header value, no http context", nil, proxyGetHeaderMapValue, []uint64{mapRequestHeaders, k, kn, ret, retSize}, statusNotFound},
		{"header value", e.h, proxyGetHeaderMapValue, []uint64{mapRequestHeaders, k, kn, ret, retSize}, statusOK},
		{"header value, bad key pointer", e.h, proxyGetHeaderMapValue, []uint64{mapRequestHeaders, bad, kn, ret, retSize}, statusInvalidMemoryAccess},
		{"header value, bad return pointer", e.h, proxyGetHeaderMapValue, []uint64{mapRequestHeaders, k, kn, bad, retSize}, statusInvalidMemoryAccess},
		{"header value, unknown map", e.h, proxyGetHeaderMapValue, []uint64{99, k, kn, ret, retSize}, statusNotFound},
		{"response headers before the response", e.h, proxyGetHeaderMapValue, []uint64{mapResponseHeaders, k, kn, ret, retSize}, statusNotFound},
		{"pairs, bad return pointer", e.h, proxyGetHeaderMapPairs, []uint64{mapRequestHeaders, bad, retSize}, statusInvalidMemoryAccess},
		{"log, unknown level", nil, proxyLog, []uint64{9, k, kn}, statusBadArgument},
		{"log, bad pointer", nil, proxyLog, []uint64{2, bad, kn}, statusInvalidMemoryAccess},
		{"effective context, unknown", nil, proxySetEffectiveContext, []uint64{777}, statusBadArgument},
		{"effective context, root", nil, proxySetEffectiveContext, []uint64{rootID}, statusOK},
		{"continue, root context", nil, proxyContinueStream, []uint64{streamRequest}, statusBadArgument},
		{"continue, tcp stream", e.h, proxyContinueStream, []uint64{2}, statusUnimplemented},
		{"set configuration buffer", nil, proxySetBufferBytes, []uint64{bufferPluginConfig, 0, 0, k, kn}, statusBadArgument},
		{"get unknown buffer", nil, proxyGetBufferBytes, []uint64{55, 0, 10, ret, retSize}, statusNotFound},
		{"body outside http context", nil, proxyGetBufferBytes, []uint64{bufferRequestBody, 0, 10, ret, retSize}, statusNotFound},
		{"local reply, 1xx", e.h, proxySendLocalResponse, []uint64{101, 0, 0, 0, 0, 0, 0, 0}, statusBadArgument},
		{"local reply, no context", nil, proxySendLocalResponse, []uint64{200, 0, 0, 0, 0, 0, 0, 0}, statusBadArgument},
		{"local reply, bad body pointer", e.h, proxySendLocalResponse, []uint64{200, 0, 0, bad, 4, 0, 0, 0}, statusInvalidMemoryAccess},
		{"tick from an http context", e.h, proxySetTickPeriod, []uint64{10}, statusBadArgument},
		{"metric, unknown type", nil, proxyDefineMetric, []uint64{7, k, kn, ret}, statusBadArgument},
		{"metric, unknown id", nil, proxyIncrementMetric, []uint64{999, 1}, statusNotFound},
		{"dequeue, unknown queue", nil, proxyDequeueSharedQueue, []uint64{1 << 31, ret, retSize}, statusNotFound},
		{"enqueue, unknown queue", nil, proxyEnqueueSharedQueue, []uint64{1 << 31, k, kn}, statusNotFound},
		{"shared data, absent key", nil, proxyGetSharedData, []uint64{k, kn, ret, retSize, 3108}, statusNotFound},
		{"property, unknown", e.h, proxyGetProperty, append(pathArgs(e, "no.such"), ret, retSize), statusNotFound},
		{"grpc call", nil, unimplemented, []uint64{0}, statusUnimplemented},
		{"foreign function", nil, proxyCallForeignFunction, []uint64{k, kn, 0, 0, ret, retSize}, statusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.callIn(tt.h, tt.fn, tt.args...); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}

func pathArgs(e *hostEnv, path string) []uint64 {
	p, n := e.put(3200, path)
	return []uint64{p, n}
}

func TestHostHeaderRules(t *testing.T) {
	e := newHostEnv(t)
	write := func(fn api.GoModuleFunc, kind uint64, name, value string) uint64 {
		k, kn := e.put(3000, name)
		v, vn := e.put(3300, value)
		return e.callIn(e.h, fn, kind, k, kn, v, vn)
	}
	tests := []struct {
		name, key, value string
		want             uint64
	}{
		{"plain", "x-new", "v", statusOK},
		{"CR in value", "x-new", "a\r\nb", statusBadArgument},
		{"space in name", "x new", "v", statusBadArgument},
		{"framing header is dropped", "content-length", "5", statusOK},
		{"hop-by-hop header is dropped", "connection", "close", statusOK},
		{"path must be origin-form", ":path", "//evil.example/x", statusBadArgument},
		{"path", ":path", "/new?x=1", statusOK},
		{"method must be a token", ":method", "GE T", statusBadArgument},
		{"unknown pseudo-header", ":nope", "x", statusBadArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := write(proxyReplaceHeaderMapValue, mapRequestHeaders, tt.key, tt.value); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	req := &e.h.c.Request
	if string(req.Header.Peek("Connection")) == "close" || req.Header.ContentLength() == 5 {
		t.Error("a guest wrote a framing or hop-by-hop header")
	}
	if string(req.RequestURI()) != "/new?x=1" {
		t.Errorf("uri %q", req.RequestURI())
	}
	// Writing the response's headers in the request phase is refused.
	if got := write(proxyAddHeaderMapValue, mapResponseHeaders, "x-a", "b"); got != statusBadArgument {
		t.Errorf("response header in the request phase: %d", got)
	}
	// The serialised map starts with the pseudo-headers, names lowercase.
	if st := e.callIn(e.h, proxyGetHeaderMapPairs, mapRequestHeaders, 3100, 3104); st != statusOK {
		t.Fatalf("pairs: %d", st)
	}
	pairs, ok := parsePairs([]byte(e.got(3100, 3104)))
	if !ok || len(pairs) < 5 {
		t.Fatalf("pairs %q ok=%v", pairs, ok)
	}
	for i, want := range []string{":method", ":path", ":authority", ":scheme"} {
		if string(pairs[i][0]) != want {
			t.Errorf("pair %d = %s, want %s", i, pairs[i][0], want)
		}
	}
	found := false
	for _, kv := range pairs {
		found = found || string(kv[0]) == "x-one" && string(kv[1]) == "1"
	}
	if !found {
		t.Errorf("x-one: 1 missing from %q", pairs)
	}
}

func TestHostPropertiesAndQueues(t *testing.T) {
	e := newHostEnv(t)
	prop := func(path string) (string, uint64) {
		st := e.callIn(e.h, proxyGetProperty, append(pathArgs(e, path), 3100, 3104)...)
		return e.got(3100, 3104), st
	}
	for path, want := range map[string]string{
		"plugin_name":           "pw-host",
		"plugin_vm_id":          "pw-host",
		"request\x00path":       "/a?b=c",
		"request.method":        "GET",
		"request.host":          "example.com",
		"source.address":        "10.0.0.2:5555",
		"request.headers.x-one": "1",
		"route_name":            "route-a",
	} {
		if got, st := prop(path); st != statusOK || got != want {
			t.Errorf("%q = %q (status %d), want %q", path, got, st, want)
		}
	}
	if got, st := prop("source.port"); st != statusOK || binary.LittleEndian.Uint64([]byte(got)) != 5555 {
		t.Errorf("source.port = %x (status %d)", got, st)
	}
	// set_property then get_property.
	k, kn := e.put(3200, "my.prop")
	v, vn := e.put(3300, "val")
	if st := e.callIn(e.h, proxySetProperty, k, kn, v, vn); st != statusOK {
		t.Fatalf("set_property: %d", st)
	}
	if got, st := prop("my.prop"); st != statusOK || got != "val" {
		t.Errorf("my.prop = %q (%d)", got, st)
	}
	// A queue: register, enqueue, dequeue, then empty.
	qn, qnn := e.put(3400, "jobs")
	if st := e.call(proxyRegisterSharedQueue, qn, qnn, 3108); st != statusOK {
		t.Fatalf("register: %d", st)
	}
	id, _ := e.mod.Memory().ReadUint32Le(3108)
	vm, vmn := e.put(3500, "pw-host")
	if st := e.call(proxyResolveSharedQueue, vm, vmn, qn, qnn, 3112); st != statusOK {
		t.Fatalf("resolve: %d", st)
	}
	if rid, _ := e.mod.Memory().ReadUint32Le(3112); rid != id {
		t.Errorf("resolved %d, registered %d", rid, id)
	}
	item, itemn := e.put(3600, "job-1")
	if st := e.call(proxyEnqueueSharedQueue, uint64(id), item, itemn); st != statusOK {
		t.Fatalf("enqueue: %d", st)
	}
	if st := e.call(proxyDequeueSharedQueue, uint64(id), 3100, 3104); st != statusOK || e.got(3100, 3104) != "job-1" {
		t.Errorf("dequeue: %d %q", st, e.got(3100, 3104))
	}
	if st := e.call(proxyDequeueSharedQueue, uint64(id), 3100, 3104); st != statusEmpty {
		t.Errorf("dequeue of an empty queue: %d, want Empty", st)
	}
	// Shared data: CAS mismatch.
	sk, skn := e.put(3700, "k")
	if st := e.call(proxySetSharedData, sk, skn, v, vn, 0); st != statusOK {
		t.Fatalf("set: %d", st)
	}
	if st := e.call(proxyGetSharedData, sk, skn, 3100, 3104, 3108); st != statusOK {
		t.Fatalf("get: %d", st)
	}
	cas, _ := e.mod.Memory().ReadUint32Le(3108)
	if st := e.call(proxySetSharedData, sk, skn, v, vn, uint64(cas+1000)); st != statusCasMismatch {
		t.Errorf("stale cas: %d, want CasMismatch", st)
	}
	if st := e.call(proxySetSharedData, sk, skn, v, vn, uint64(cas)); st != statusOK {
		t.Errorf("current cas: %d", st)
	}
}

var _ = wasmhost.Spec{}

func TestInspect(t *testing.T) {
	r, err := Inspect(filterWasm)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != V021 || len(r.Missing) != 0 || len(r.Callbacks) < 8 {
		t.Errorf("report %+v", r)
	}
}
