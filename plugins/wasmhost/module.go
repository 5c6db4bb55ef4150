// Package wasmhost runs WebAssembly plugins: it compiles a module once with wazero (through a
// file-backed compilation cache), keeps a bounded pool of instances, puts a deadline on every
// guest call and a cap on guest memory, discards any instance that traps or times out, and
// adapts a plugin into a filter.Filter that answers per its fail policy. It registers itself with
// core/filter as the http-wasm loader, so the engine builds plugins without importing it.
package wasmhost

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/plugins/httpwasm"
)

// initTimeout bounds instantiation, which runs the guest's start functions (a Go guest starts
// its runtime there); it is generous because it happens off the request path.
const initTimeout = 5 * time.Second

// Spec is everything that defines a loaded plugin (filter.PluginSpec, which the engine fills
// from config). Two equal specs share one Module.
type Spec filter.PluginSpec

// defaults fills zero fields with config's defaults, for specs made outside the engine (tests,
// Inspect); the engine's specs come with every field set.
func (s *Spec) defaults() {
	d := config.DefaultPlugin()
	if s.Timeout <= 0 {
		s.Timeout = d.Timeout
	}
	if s.MemoryMB <= 0 {
		s.MemoryMB = d.MemoryMB
	}
	if s.PoolMax <= 0 {
		s.PoolMax = d.Pool.Max
	}
	if s.PoolMin <= 0 {
		s.PoolMin = d.Pool.Min
	}
	s.PoolMin = min(s.PoolMin, s.PoolMax)
	if s.MaxWait <= 0 {
		s.MaxWait = d.Pool.MaxWait
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = int(d.MaxBodyBytes)
	}
	if s.MaxHeaderBytes <= 0 {
		s.MaxHeaderBytes = config.DefaultMaxHeaderBytes
	}
}

// Key identifies the module a spec loads: the wasm bytes' hash plus every setting, so a reload
// that leaves a plugin unchanged finds the same key and keeps its warm instances.
func (s Spec) Key() string {
	s.defaults()
	sum := sha256.Sum256(s.Wasm)
	h := sha256.New()
	fmt.Fprintf(h, "%x|%s|%d|%d|%d|%d|%d|%t|%s|%d|%d|", sum, s.Name, s.Timeout, s.MemoryMB, s.PoolMax, s.PoolMin, s.MaxWait, s.FailOpen, s.CacheDir, s.MaxBodyBytes, s.MaxHeaderBytes)
	h.Write(s.Config)
	return "plugin/" + s.Name + "/" + hex.EncodeToString(h.Sum(nil)[:12])
}

// Module is a compiled plugin with its instance pool. It is safe for concurrent use.
type Module struct {
	spec Spec
	// instrumented modules carry interrupt checks (see instrument); others rely on wazero's
	// per-call context watcher.
	instrumented bool
	log          zerolog.Logger
	rt           wazero.Runtime
	code         wazero.CompiledModule
	stats        *Counters

	idle   chan *instance // free instances
	tokens chan struct{}  // one per live instance: bounds the pool

	mu        sync.Mutex
	instances map[*instance]struct{}
	closed    atomic.Bool
}

// compileModule compiles spec.Wasm in a runtime of its own, with the deadline instrumentation,
// the sealed compilation cache and the memory cap every plugin gets, whatever its ABI. The
// caller owns the runtime (closing it frees the module).
func compileModule(spec Spec, log zerolog.Logger) (rt wazero.Runtime, code wazero.CompiledModule, instrumented bool, err error) {
	ctx := context.Background()
	// Interrupt checks compiled into the guest stop it at its deadline at the cost of a load per
	// loop iteration; a module the rewriter cannot handle gets wazero's per-call watcher.
	wasm := spec.Wasm
	if useInterruptChecks {
		if iw, err := instrument(spec.Wasm); err == nil {
			wasm, instrumented = iw, true
		} else {
			log.Debug().Err(err).Msg("plugin not instrumented; deadlines use wazero's per-call watcher")
		}
	}
	cache, err := compilationCache(spec.CacheDir, log)
	if err != nil {
		return nil, nil, false, err
	}
	cfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(!instrumented).
		WithMemoryLimitPages(uint32(spec.MemoryMB) * 16).
		WithCompilationCache(cache.wz)
	rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if code, err = cache.compile(ctx, rt, wasm, log); err != nil {
		_ = rt.Close(ctx)
		return nil, nil, false, fmt.Errorf("compile: %w", err)
	}
	return rt, code, instrumented, nil
}

// Load compiles spec.Wasm, checks that it is an http-wasm guest whose imports this host
// provides, and creates spec.PoolMin instances, so a broken module fails here, at config load,
// rather than on the first request.
func Load(spec Spec, log zerolog.Logger) (_ *Module, err error) {
	spec.defaults()
	rt, code, instrumented, err := compileModule(spec, log)
	if err != nil {
		return nil, err
	}
	m := &Module{
		spec:         spec,
		instrumented: instrumented,
		log:          log,
		rt:           rt,
		code:         code,
		stats:        counters(spec.Name),
		idle:         make(chan *instance, spec.PoolMax),
		tokens:       make(chan struct{}, spec.PoolMax),
		instances:    map[*instance]struct{}{},
	}
	defer func() {
		if err != nil {
			_ = m.Close()
		}
	}()
	if err := CheckModule(m.code); err != nil {
		return nil, err
	}
	// wazero would refuse the instance with sizes rounded down to whole MiB; say it plainly.
	for _, mem := range m.code.ExportedMemories() {
		if err := config.MemoryBelowMinimum(spec.MemoryMB, mem.Min()); err != nil {
			return nil, fmt.Errorf("memory_mb: %w", err)
		}
	}
	ctx := context.Background()
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, m.rt); err != nil {
		return nil, fmt.Errorf("instantiate wasi: %w", err)
	}
	if err := httpwasm.Instantiate(ctx, m.rt); err != nil {
		return nil, err
	}
	for range spec.PoolMin {
		m.tokens <- struct{}{}
		in, err := m.newInstance()
		if err != nil {
			<-m.tokens
			return nil, err
		}
		m.idle <- in
	}
	watch.add(m)
	return m, nil
}

// Spec returns the module's spec with defaults applied.
func (m *Module) Spec() Spec { return m.spec }

// Stats returns the plugin's counters.
func (m *Module) Stats() *Counters { return m.stats }

// CheckModule reports why a compiled module cannot run as an http-wasm plugin: a proxy-wasm
// module, a missing export or memory, or an import this host does not provide.
func CheckModule(code wazero.CompiledModule) error {
	exports := code.ExportedFunctions()
	if DetectABI(code) == ABIProxyWasm {
		return otherABIError("proxy-wasm module (exports proxy_on_*), not an http-wasm guest; the proxy-wasm loader runs it when it is linked in")
	}
	var errs []error
	want := map[string][2][]api.ValueType{
		"handle_request":  {nil, {api.ValueTypeI64}},
		"handle_response": {{api.ValueTypeI32, api.ValueTypeI32}, nil},
	}
	for _, name := range []string{"handle_request", "handle_response"} {
		f, ok := exports[name]
		if !ok {
			errs = append(errs, fmt.Errorf("missing export %q (an http-wasm guest exports handle_request and handle_response)", name))
			continue
		}
		if !slices.Equal(f.ParamTypes(), want[name][0]) || !slices.Equal(f.ResultTypes(), want[name][1]) {
			errs = append(errs, fmt.Errorf("export %q has signature %s, want %s", name, Signature(f.ParamTypes(), f.ResultTypes()), Signature(want[name][0], want[name][1])))
		}
	}
	if _, ok := code.ExportedMemories()["memory"]; !ok {
		errs = append(errs, errors.New(`missing export "memory" (the host reads and writes guest memory through it)`))
	}
	host := httpwasm.Functions()
	for _, f := range code.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case httpwasm.ModuleName:
			sig, ok := host[name]
			if !ok {
				errs = append(errs, fmt.Errorf("imports %s.%s, which the http-wasm ABI does not define", mod, name))
			} else if !slices.Equal(f.ParamTypes(), sig.Params) || !slices.Equal(f.ResultTypes(), sig.Results) {
				errs = append(errs, fmt.Errorf("imports %s.%s with signature %s, want %s", mod, name, Signature(f.ParamTypes(), f.ResultTypes()), Signature(sig.Params, sig.Results)))
			}
		case wasi_snapshot_preview1.ModuleName:
			// Provided (sandboxed: no files, environment or sockets).
		default:
			errs = append(errs, fmt.Errorf("imports %s.%s; this host provides only %s and %s", mod, name, httpwasm.ModuleName, wasi_snapshot_preview1.ModuleName))
		}
	}
	return errors.Join(errs...)
}

// Signature writes a function type as "(i32, i64) -> (i32)", for messages and inspect.
func Signature(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return name(params) + " -> " + name(results)
}

// ABI names.
const (
	ABIHTTPWasm  = "http-wasm"
	ABIProxyWasm = "proxy-wasm"
	ABIUnknown   = "unknown"
)

// DetectABI names the plugin ABI a module was written for, from its exports.
func DetectABI(code wazero.CompiledModule) string {
	exports := code.ExportedFunctions()
	for name := range exports {
		if strings.HasPrefix(name, "proxy_on_") {
			return ABIProxyWasm
		}
	}
	if _, ok := exports["handle_request"]; ok {
		return ABIHTTPWasm
	}
	if _, ok := exports["handle_response"]; ok {
		return ABIHTTPWasm
	}
	return ABIUnknown
}

// newInstance instantiates the module. The caller holds a pool token for it.
func (m *Module) newInstance() (*instance, error) {
	state := httpwasm.NewState(m.spec.Config, m.log)
	state.Limits = httpwasm.Limits{HeaderBytes: m.spec.MaxHeaderBytes, BodyBytes: m.spec.MaxBodyBytes}
	in := &instance{owner: m, state: state}
	in.ctx = callCtx{state: state, done: make(chan struct{})}

	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), httpwasm.StateKey{}, state), initTimeout)
	defer cancel()
	mc := wazero.NewModuleConfig().
		WithName("").
		// A reactor (Go -buildmode=c-shared, C/Rust cdylib) initialises in _initialize; a TinyGo
		// style guest registers its handlers in a _start that returns.
		WithStartFunctions("_initialize", "_start").
		WithStdout(logWriter{log: m.log, level: zerolog.InfoLevel, stream: "stdout"}).
		WithStderr(logWriter{log: m.log, level: zerolog.WarnLevel, stream: "stderr"}).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	mod, err := m.rt.InstantiateModule(ctx, m.code, mc)
	if err != nil {
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 {
			return nil, errors.New("instantiate: the guest exited during start; build it as a reactor (Go: -buildmode=c-shared; C/Rust: no main that exits)")
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("instantiate: start functions ran past %s", initTimeout)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	in.mod = mod
	in.req = mod.ExportedFunction("handle_request")
	in.resp = mod.ExportedFunction("handle_response")
	if m.instrumented {
		in.interrupt, _ = mod.ExportedGlobal(InterruptExport).(api.MutableGlobal)
	}
	if in.req == nil || in.resp == nil || (m.instrumented && in.interrupt == nil) {
		_ = mod.Close(context.Background())
		return nil, errors.New("instantiate: handle_request, handle_response or the interrupt flag is not exported")
	}
	m.mu.Lock()
	m.instances[in] = struct{}{}
	m.mu.Unlock()
	m.stats.Instances.Add(1)
	m.stats.Created.Add(1)
	return in, nil
}

// forget drops a closed instance from the books and frees its pool token.
func (m *Module) forget(in *instance) {
	m.mu.Lock()
	_, ok := m.instances[in]
	delete(m.instances, in)
	m.mu.Unlock()
	if ok {
		m.stats.Instances.Add(-1)
		<-m.tokens
	}
}

// errPoolTimeout is returned when no instance became free within MaxWait.
var errPoolTimeout = errors.New("no plugin instance free within pool.max_wait")

// errClosed is returned by get after Close.
var errClosed = errors.New("plugin module is closed")

// get returns a free instance, creating one while the pool is below PoolMax, else waiting up
// to MaxWait for one to be returned.
func (m *Module) get() (*instance, error) {
	select {
	case in := <-m.idle:
		return in, nil
	default:
	}
	if m.closed.Load() {
		return nil, errClosed
	}
	select {
	case in := <-m.idle:
		return in, nil
	case m.tokens <- struct{}{}:
		return m.create()
	default:
	}
	m.stats.PoolWaits.Add(1)
	t := time.NewTimer(m.spec.MaxWait)
	defer t.Stop()
	select {
	case in := <-m.idle:
		return in, nil
	case m.tokens <- struct{}{}:
		return m.create()
	case <-t.C:
		m.stats.PoolTimeouts.Add(1)
		return nil, errPoolTimeout
	}
}

func (m *Module) create() (*instance, error) {
	in, err := m.newInstance()
	if err != nil {
		<-m.tokens
		m.stats.InstantiateErrors.Add(1)
		m.log.Error().Err(err).Msg("plugin instance creation failed")
		return nil, err
	}
	return in, nil
}

// put returns a healthy instance to the pool.
func (m *Module) put(in *instance) {
	in.state.End()
	if m.closed.Load() {
		in.close()
		return
	}
	// Never blocks: the channel holds PoolMax and at most PoolMax instances exist.
	m.idle <- in
}

// discard closes an instance that trapped or timed out; it never returns to the pool.
func (m *Module) discard(in *instance) {
	in.state.End()
	m.stats.Discarded.Add(1)
	in.close()
}

// Close closes every instance and the runtime. Requests must no longer use the module (the
// engine closes it when the last snapshot using it retires).
func (m *Module) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	watch.remove(m)
	m.mu.Lock()
	all := make([]*instance, 0, len(m.instances))
	for in := range m.instances {
		all = append(all, in)
	}
	m.mu.Unlock()
	for _, in := range all {
		in.close()
	}
	if err := m.rt.Close(context.Background()); err != nil {
		return fmt.Errorf("close plugin %q runtime: %w", m.spec.Name, err)
	}
	return nil
}

// logWriter turns a guest's stdout or stderr writes into log lines.
type logWriter struct {
	log    zerolog.Logger
	level  zerolog.Level
	stream string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if len(line) > httpwasm.MaxLogLen {
			line = line[:httpwasm.MaxLogLen]
		}
		w.log.WithLevel(w.level).Str("source", "guest").Str("stream", w.stream).Msg(line)
	}
	return len(p), nil
}

// The compilation cache (compilationCache, CacheDir) is in cache.go.

// --- counters -------------------------------------------------------------------------------

// Counters are one plugin's counters, registered in telemetry.Metrics under the group "plugins"
// and the plugin's name. They are kept for the life of the process, across reloads, so they
// only ever grow (Instances excepted). Each is registered once, when a module loads, so a
// request only adds to a pointer it already holds.
type Counters struct {
	// Calls counts guest calls (handle_request and handle_response).
	Calls *telemetry.Metric
	// Traps counts calls that trapped (guest fault or host-side misuse).
	Traps *telemetry.Metric
	// Timeouts counts calls stopped at their deadline.
	Timeouts *telemetry.Metric
	// PoolWaits counts requests that had to wait for a free instance; PoolTimeouts those
	// that gave up after pool.max_wait.
	PoolWaits, PoolTimeouts *telemetry.Metric
	// Failures counts requests answered per the fail policy.
	Failures *telemetry.Metric
	// Instances is the number of live instances; Created and Discarded count them over time.
	Instances, Created, Discarded *telemetry.Metric
	// InstantiateErrors counts failed instance creations after load.
	InstantiateErrors *telemetry.Metric
	// CallDuration times one guest call in telemetry.PluginTimingSample of each instance
	// (weir_plugin_call_duration_seconds): two clock reads would cost a good part of a small
	// call, and a sample gives the same quantiles.
	CallDuration telemetry.Histogram
}

// metricsGroup is the telemetry group of plugin counters (the admin API's /stats "plugins").
const metricsGroup = "plugins"

// At /metrics the counters are weir_plugin_<name>_total{plugin="…"}; a proxy-wasm plugin's own
// metrics ("guest.<name>") follow the same naming, sanitised.
func init() {
	telemetry.Metrics.Export(metricsGroup, telemetry.Export{Prefix: "weir_plugin", Member: "plugin", Help: map[string]string{
		"calls":               "Guest calls (request and response phases).",
		"traps":               "Guest calls that trapped; the instance is discarded.",
		"timeouts":            "Guest calls stopped at their deadline.",
		"pool_waits":          "Requests that waited for a free instance.",
		"pool_timeouts":       "Requests that gave up waiting for an instance (pool.max_wait).",
		"failures":            "Requests answered per the plugin's fail policy.",
		"instances":           "Live instances.",
		"instances_created":   "Instances created.",
		"instances_discarded": "Instances discarded (trap, timeout, memory, shrink).",
		"instantiate_errors":  "Failed instance creations after load.",
	}})
}

// counters registers (or finds again, after a reload) the counters of the plugin name.
func counters(name string) *Counters {
	c := func(n string) *telemetry.Metric { return telemetry.Metrics.Counter(metricsGroup, name, n) }
	return &Counters{
		Calls: c("calls"), Traps: c("traps"), Timeouts: c("timeouts"),
		PoolWaits: c("pool_waits"), PoolTimeouts: c("pool_timeouts"), Failures: c("failures"),
		Instances: telemetry.Metrics.Gauge(metricsGroup, name, "instances"),
		Created:   c("instances_created"), Discarded: c("instances_discarded"),
		InstantiateErrors: c("instantiate_errors"),
		CallDuration:      telemetry.PluginCallDuration(name),
	}
}
