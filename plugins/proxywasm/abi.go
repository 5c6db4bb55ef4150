// Package proxywasm runs plugins written against the proxy-wasm ABI (v0.1.0, v0.2.0 and v0.2.1),
// so that filters built with the proxy-wasm SDKs for Envoy, Istio and Higress run unchanged. It
// registers a loader with core/filter; the engine knows it only through that registration.
//
// The model is Envoy's: a few long-lived instances per plugin, each with a root context
// (proxy_on_vm_start, proxy_on_configure, timers, queues) and one HTTP context per request,
// created on the instance the request is pinned to for its lifetime. Every callback takes the
// instance's lock for the call only, so a request paused by its filter (or waiting for the
// upstream) holds nothing. Compilation, the memory cap, deadlines and fault accounting are
// wasmhost's.
package proxywasm

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/weir-gateway/weir/plugins/wasmhost"
)

// ABI versions, named by the export that declares them.
const (
	V010 = "0.1.0"
	V020 = "0.2.0"
	V021 = "0.2.1"
)

var versionExports = map[string]string{
	"proxy_abi_version_0_1_0": V010,
	"proxy_abi_version_0_2_0": V020,
	"proxy_abi_version_0_2_1": V021,
}

// Version returns the proxy-wasm ABI version a module declares through its
// proxy_abi_version_* export, or "" when it declares none.
func Version(code wazero.CompiledModule) string {
	for name := range code.ExportedFunctions() {
		if v, ok := versionExports[name]; ok {
			return v
		}
	}
	return ""
}

// proxy_status_t.
const (
	statusOK                  = 0
	statusNotFound            = 1
	statusBadArgument         = 2
	statusSerializationFailed = 3
	statusInvalidMemoryAccess = 6
	statusEmpty               = 7
	statusCasMismatch         = 8
	statusInternalFailure     = 10
	statusUnimplemented       = 12
)

// proxy_buffer_type_t.
const (
	bufferRequestBody      = 0
	bufferResponseBody     = 1
	bufferHTTPCallResponse = 4
	bufferVMConfiguration  = 6
	bufferPluginConfig     = 7
)

// proxy_map_type_t.
const (
	mapRequestHeaders  = 0
	mapRequestTrailers = 1
	mapResponseHeaders = 2
	mapResponseTrailer = 3
	// The response to an HTTP callout, readable in proxy_on_http_call_response.
	mapHTTPCallResponseHeaders  = 6
	mapHTTPCallResponseTrailers = 7
)

// proxy_stream_type_t.
const (
	streamRequest  = 0
	streamResponse = 1
)

// proxy_metric_type_t.
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// Module names of the host functions.
const (
	envModule          = "env"
	wasiUnstableModule = "wasi_unstable"
)

type sig struct{ params, results []api.ValueType }

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func sigI32(n int) sig {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = i32
	}
	return sig{p, []api.ValueType{i32}}
}

type hostFunc struct {
	name string
	sig  sig
	fn   api.GoModuleFunc
	// unimplemented functions answer statusUnimplemented; they exist so that a module
	// importing them instantiates.
	unimplemented bool
}

// functions is every host function of v0.1.0, v0.2.0 and v0.2.1 (a name the versions share has
// the same signature in each), in module "env".
var functions []hostFunc

func init() {
	impl := func(name string, n int, fn api.GoModuleFunc) {
		functions = append(functions, hostFunc{name: name, sig: sigI32(n), fn: fn})
	}
	unimpl := func(name string, n int) {
		functions = append(functions, hostFunc{name: name, sig: sigI32(n), fn: unimplemented, unimplemented: true})
	}
	// Logging, clocks, timers.
	impl("proxy_log", 3, proxyLog)
	impl("proxy_get_log_level", 1, proxyGetLogLevel)
	impl("proxy_get_current_time_nanoseconds", 1, proxyGetCurrentTime)
	impl("proxy_set_tick_period_milliseconds", 1, proxySetTickPeriod)
	// Context.
	impl("proxy_set_effective_context", 1, proxySetEffectiveContext)
	impl("proxy_done", 0, proxyDone)
	// Configuration (v0.1.0).
	impl("proxy_get_configuration", 2, proxyGetConfiguration)
	// Buffers.
	impl("proxy_get_buffer_bytes", 5, proxyGetBufferBytes)
	impl("proxy_set_buffer_bytes", 5, proxySetBufferBytes)
	impl("proxy_get_buffer_status", 3, proxyGetBufferStatus)
	// Header maps.
	impl("proxy_get_header_map_size", 2, proxyGetHeaderMapSize)
	impl("proxy_get_header_map_pairs", 3, proxyGetHeaderMapPairs)
	impl("proxy_set_header_map_pairs", 3, proxySetHeaderMapPairs)
	impl("proxy_get_header_map_value", 5, proxyGetHeaderMapValue)
	impl("proxy_add_header_map_value", 5, proxyAddHeaderMapValue)
	impl("proxy_replace_header_map_value", 5, proxyReplaceHeaderMapValue)
	impl("proxy_remove_header_map_value", 3, proxyRemoveHeaderMapValue)
	// Streams.
	impl("proxy_continue_stream", 1, proxyContinueStream)
	impl("proxy_close_stream", 1, proxyCloseStream)
	impl("proxy_continue_request", 0, proxyContinueRequest)
	impl("proxy_continue_response", 0, proxyContinueResponse)
	impl("proxy_clear_route_cache", 0, proxyOK)
	impl("proxy_send_local_response", 8, proxySendLocalResponse)
	// Properties.
	impl("proxy_get_property", 4, proxyGetProperty)
	impl("proxy_set_property", 4, proxySetProperty)
	// Shared data and queues.
	impl("proxy_get_shared_data", 5, proxyGetSharedData)
	impl("proxy_set_shared_data", 5, proxySetSharedData)
	impl("proxy_register_shared_queue", 3, proxyRegisterSharedQueue)
	impl("proxy_resolve_shared_queue", 5, proxyResolveSharedQueue)
	impl("proxy_enqueue_shared_queue", 3, proxyEnqueueSharedQueue)
	impl("proxy_dequeue_shared_queue", 3, proxyDequeueSharedQueue)
	// Metrics.
	impl("proxy_define_metric", 4, proxyDefineMetric)
	functions = append(functions,
		hostFunc{name: "proxy_record_metric", sig: sig{[]api.ValueType{i32, i64}, []api.ValueType{i32}}, fn: proxyRecordMetric},
		hostFunc{name: "proxy_increment_metric", sig: sig{[]api.ValueType{i32, i64}, []api.ValueType{i32}}, fn: proxyIncrementMetric},
	)
	impl("proxy_get_metric", 2, proxyGetMetric)
	// Foreign functions: none are registered, so every name is NotFound.
	impl("proxy_call_foreign_function", 6, proxyCallForeignFunction)
	// Outbound calls: HTTP to the config's upstreams; gRPC is not provided.
	impl("proxy_http_call", 10, proxyHTTPCall)
	unimpl("proxy_grpc_call", 12)
	unimpl("proxy_grpc_stream", 9)
	unimpl("proxy_grpc_send", 4)
	unimpl("proxy_grpc_cancel", 1)
	unimpl("proxy_grpc_close", 1)
	unimpl("proxy_get_status", 3)
	// What emscripten-built guests import.
	functions = append(functions, hostFunc{name: "emscripten_notify_memory_growth", sig: sig{[]api.ValueType{i32}, nil}, fn: func(context.Context, api.Module, []uint64) {}})
}

func unimplemented(_ context.Context, _ api.Module, stack []uint64) { stack[0] = statusUnimplemented }

func proxyOK(_ context.Context, _ api.Module, stack []uint64) { stack[0] = statusOK }

// Unimplemented lists the host functions that exist but answer Unimplemented.
func Unimplemented() []string {
	var out []string
	for _, f := range functions {
		if f.unimplemented {
			out = append(out, f.name)
		}
	}
	return out
}

// instantiateHost registers the env host module (the proxy-wasm functions), WASI preview 1
// under both of its module names, in r.
func instantiateHost(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(envModule)
	for _, f := range functions {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.sig.params, f.sig.results).Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate proxy-wasm host module: %w", err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		return fmt.Errorf("instantiate wasi: %w", err)
	}
	// Older SDK builds import the same functions under the pre-snapshot name.
	u := r.NewHostModuleBuilder(wasiUnstableModule)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(u)
	if _, err := u.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate %s: %w", wasiUnstableModule, err)
	}
	return nil
}

// MissingImports lists the module's imports this host does not provide (or provides with
// another signature), as "module.name signature".
func MissingImports(code wazero.CompiledModule) []string {
	host := map[string]sig{}
	for _, f := range functions {
		host[f.name] = f.sig
	}
	wasi := wasiFunctions()
	var out []string
	for _, f := range code.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case envModule:
			s, ok := host[name]
			if ok && slices.Equal(s.params, f.ParamTypes()) && slices.Equal(s.results, f.ResultTypes()) {
				continue
			}
		case wasi_snapshot_preview1.ModuleName, wasiUnstableModule:
			if wasi[name] {
				continue
			}
		}
		out = append(out, mod+"."+name+" "+wasmhost.Signature(f.ParamTypes(), f.ResultTypes()))
	}
	sort.Strings(out)
	return out
}

// wasiFunctions names the WASI preview 1 functions wazero provides.
var wasiFunctions = sync.OnceValue(func() map[string]bool {
	r := wazero.NewRuntime(context.Background())
	defer r.Close(context.Background())
	out := map[string]bool{}
	if _, err := wasi_snapshot_preview1.Instantiate(context.Background(), r); err != nil {
		return out
	}
	for name := range r.Module(wasi_snapshot_preview1.ModuleName).ExportedFunctionDefinitions() {
		out[name] = true
	}
	return out
})
