package proxywasm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/wasmhost"
)

// ABI is the name this package registers its loader under.
const ABI = "proxy-wasm"

func init() { filter.RegisterPluginLoader(ABI, loader{}) }

type loader struct{}

func (loader) Load(env filter.Env, spec filter.PluginSpec) (filter.Filter, error) {
	f, err := NewFilter(env, wasmhost.Spec(spec))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// otherABI refuses a module that is not a proxy-wasm guest, letting another loader try it.
type otherABI string

func (e otherABI) Error() string      { return string(e) }
func (otherABI) Is(target error) bool { return target == filter.ErrOtherABI }

// PauseTimeout bounds how long a request paused by its filter waits for
// proxy_continue_stream (or a local reply); then it is answered per the fail policy (504 when
// closed).
var PauseTimeout = 30 * time.Second

// plugin is a loaded proxy-wasm module with its instances. It lives in the engine's shared
// store, so routes and snapshots with the same plugin and settings share it.
type plugin struct {
	spec    wasmhost.Spec
	log     zerolog.Logger
	c       *wasmhost.Compiled
	version string
	vmID    *vmShared

	slots []*vmSlot
	next  atomic.Uint32
	// latest is the filter built last for this plugin: its snapshot's upstreams are the ones
	// a root context (a tick, a queue callback) may call.
	latest atomic.Pointer[Filter]
}

type vmSlot struct {
	mu sync.Mutex
	v  atomic.Pointer[vm]
}

// Instances returns how many instances a plugin with spec runs: one per CPU, at least
// pool.min and at most pool.max. Each serves any number of requests, one callback at a time.
func Instances(spec wasmhost.Spec) int {
	return max(1, min(spec.PoolMax, max(spec.PoolMin, runtime.GOMAXPROCS(0))))
}

// load compiles the module, checks it is a proxy-wasm guest whose imports this host provides,
// and starts every instance, so that a broken module or a refused config fails the load.
func load(spec wasmhost.Spec, log zerolog.Logger) (_ *plugin, err error) {
	c, err := wasmhost.Compile(spec, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	ver := Version(c.Code())
	if ver == "" {
		return nil, otherABI("not a proxy-wasm module (it exports no proxy_abi_version_0_1_0, _0_2_0 or _0_2_1)")
	}
	if missing := MissingImports(c.Code()); len(missing) > 0 {
		return nil, fmt.Errorf("proxy-wasm %s module imports what this host does not provide: %s", ver, strings.Join(missing, ", "))
	}
	if _, ok := c.Code().ExportedMemories()["memory"]; !ok {
		return nil, errors.New(`missing export "memory" (the host reads and writes guest memory through it)`)
	}
	if err := instantiateHost(context.Background(), c.Runtime()); err != nil {
		return nil, err
	}
	p := &plugin{spec: c.Spec(), log: log, c: c, version: ver, vmID: sharedFor(spec.Name)}
	for range Instances(p.spec) {
		v, err := p.newVM()
		if err != nil {
			return nil, err
		}
		s := &vmSlot{}
		s.v.Store(v)
		p.slots = append(p.slots, s)
	}
	return p, nil
}

// pick returns a live instance for a new request, round robin; one discarded after a fault is
// replaced here.
func (p *plugin) pick() (*vm, error) {
	s := p.slots[int(p.next.Add(1))%len(p.slots)]
	if v := s.v.Load(); v != nil && !v.dead.Load() {
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.v.Load(); v != nil && !v.dead.Load() {
		return v, nil
	}
	v, err := p.newVM()
	if err != nil {
		p.log.Error().Err(err).Msg("plugin instance creation failed")
		return nil, err
	}
	s.v.Store(v)
	return v, nil
}

// Close stops every instance's timer and closes the module.
func (p *plugin) Close() error {
	for _, s := range p.slots {
		if v := s.v.Load(); v != nil {
			v.close()
		}
	}
	return p.c.Close()
}

// Filter runs a proxy-wasm plugin on a route.
type Filter struct {
	p         *plugin
	slot      int
	name      string
	upstreams filter.Upstreams
	release   func() error
}

var (
	_ filter.Filter = (*Filter)(nil)
	_ io.Closer     = (*Filter)(nil)
)

// NewFilter returns the plugin described by spec as a filter for env's route. The module
// comes from env.Shared, so routes and snapshots with equal specs share one set of instances.
func NewFilter(env filter.Env, spec wasmhost.Spec) (*Filter, error) {
	v, release, err := env.Shared.Acquire("proxy-wasm/"+spec.Key(), func() (io.Closer, error) {
		return load(spec, env.Log.With().Str("plugin", spec.Name).Logger())
	})
	if err != nil {
		var inner error = err
		if u := errors.Unwrap(err); u != nil {
			inner = u
		}
		return nil, fmt.Errorf("load plugin %q: %w", spec.Name, inner)
	}
	f := &Filter{p: v.(*plugin), slot: env.Slot, name: spec.Name, upstreams: env.Upstreams, release: release}
	f.p.latest.Store(f)
	return f, nil
}

// Close releases the filter's reference on the shared plugin.
func (f *Filter) Close() error {
	f.p.latest.CompareAndSwap(f, nil)
	return f.release()
}

// Version returns the ABI version the plugin's module declares.
func (f *Filter) Version() string { return f.p.version }

// OnRequest creates the request's HTTP context on an instance and runs the request callbacks.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	v, err := f.p.pick()
	if err != nil {
		return f.fail(c, fasthttp.StatusServiceUnavailable, err)
	}
	h := httpCtxPool.Get().(*httpCtx)
	h.v, h.f, h.c = v, f, c
	h.headerBytes = f.p.spec.MaxHeaderBytes
	v.mu.Lock()
	if v.dead.Load() {
		v.mu.Unlock()
		f.recycle(h)
		return f.fail(c, fasthttp.StatusServiceUnavailable, errDead)
	}
	v.newContext(h)
	_, err = v.call(h, v.onContextCreate, uint64(h.id), rootID)
	v.mu.Unlock()
	if err != nil {
		return f.abort(h, err)
	}
	req := &c.Request
	// A chunked body the server has read whole reads as one of known length; its trailers
	// are already in the header then.
	h.reqChunked = req.Header.ContentLength() == -1 || len(req.Header.PeekTrailerKeys()) > 0
	eos := uint64(0)
	if !req.IsBodyStream() && len(req.Body()) == 0 && !h.reqChunked {
		eos = 1
	}
	n := uint64(4)
	req.Header.VisitAll(func(k, _ []byte) {
		if !strEqualFold(k, "host") {
			n++
		}
	})
	act, err := f.callback(h, v.onRequestHeaders, true, n, eos)
	if err != nil {
		return f.abort(h, err)
	}
	if st, done := f.after(h, act, false); done {
		return st
	}
	if eos == 0 && (v.onRequestBody != nil || v.onRequestTrailers != nil && h.reqChunked) {
		body, status, err := readRequestBody(req, f.p.spec.MaxBodyBytes)
		if err != nil {
			f.finish(h)
			c.Response.SetConnectionClose()
			return c.Fail(status, fmt.Errorf("plugin %q: %w", f.name, err))
		}
		// Trailers, read with the body, end the stream when there are any.
		nt := countTrailers(&req.Header, h.reqChunked)
		if len(body) > 0 && v.onRequestBody != nil {
			act, err := f.callback(h, v.onRequestBody, false, uint64(len(body)), endOfStream(nt))
			if err != nil {
				return f.abort(h, err)
			}
			if st, done := f.after(h, act, true); done {
				return st
			}
		}
		if nt > 0 && v.onRequestTrailers != nil {
			act, err := f.callback(h, v.onRequestTrailers, false, nt, 0)
			if err != nil {
				return f.abort(h, err)
			}
			if st, done := f.after(h, act, true); done {
				return st
			}
		}
	}
	*c.Slot(f.slot) = h
	return filter.Continue
}

// callback runs one callback on h under the instance lock, draining any stale resume first.
func (f *Filter) callback(h *httpCtx, fn apiFunction, headers bool, size, eos uint64) (uint64, error) {
	v := h.v
	v.mu.Lock()
	defer v.mu.Unlock()
	h.drain()
	r, err := v.call(h, fn, uint64(h.id), size, eos)
	if err == nil && fn != nil && r != actionContinue && !(headers && r == headersContinueAndEndStream) {
		h.paused = true // set under the lock, so a tick sees it only once the callback is over
	}
	return r, err
}

// after handles a callback's action: a pause waits for the resume (or a local reply), a local
// reply answers the request. done reports that OnRequest must return st.
func (f *Filter) after(h *httpCtx, act uint64, body bool) (st filter.Status, done bool) {
	if h.paused {
		if err := f.wait(h); err != nil {
			if errors.Is(err, errPauseTimeout) {
				c := h.c
				f.finish(h)
				return f.fail(c, fasthttp.StatusGatewayTimeout, err), true
			}
			return f.abort(h, err), true
		}
	}
	if lr := h.local; lr != nil {
		lr.apply(&h.c.Response)
		f.finish(h)
		return filter.Stop, true
	}
	return filter.Continue, false
}

// wait blocks the request goroutine, holding no lock, until the guest resumes it.
func (f *Filter) wait(h *httpCtx) error {
	t := time.NewTimer(PauseTimeout)
	defer t.Stop()
	var err error
	select {
	case <-h.resume:
	case <-t.C:
		err = errPauseTimeout
	}
	h.v.mu.Lock()
	h.paused = false
	dead := h.v.dead.Load()
	h.v.mu.Unlock()
	if err == nil && dead {
		err = errDead
	}
	return err
}

// OnResponse runs the response callbacks and ends the HTTP context.
func (f *Filter) OnResponse(c *filter.Ctx) {
	slot := c.Slot(f.slot)
	h, ok := (*slot).(*httpCtx)
	*slot = nil
	if !ok {
		return
	}
	v := h.v
	h.response = true
	resp := &c.Response
	h.respChunked = resp.IsBodyStream() && resp.Header.ContentLength() == -1
	eos := uint64(0)
	if !resp.IsBodyStream() && len(resp.Body()) == 0 {
		eos = 1
	}
	n := uint64(1)
	resp.Header.VisitAll(func(_, _ []byte) { n++ })
	act, err := f.callback(h, v.onResponseHeaders, true, n, eos)
	if err != nil {
		f.abortResponse(h, err)
		return
	}
	if f.afterResponse(h, act) {
		return
	}
	if eos == 0 && (v.onResponseBody != nil || v.onResponseTrailers != nil && h.respChunked) {
		body, err := readResponseBody(resp, f.p.spec.MaxBodyBytes, h.respChunked)
		if err != nil {
			f.finish(h)
			resp.Reset()
			c.Fail(fasthttp.StatusBadGateway, fmt.Errorf("plugin %q: %w", f.name, err))
			return
		}
		nt := countTrailers(&resp.Header, h.respChunked)
		if len(body) > 0 && v.onResponseBody != nil {
			act, err := f.callback(h, v.onResponseBody, false, uint64(len(body)), endOfStream(nt))
			if err != nil {
				f.abortResponse(h, err)
				return
			}
			if f.afterResponse(h, act) {
				return
			}
		}
		if nt > 0 && v.onResponseTrailers != nil {
			act, err := f.callback(h, v.onResponseTrailers, false, nt, 0)
			if err != nil {
				f.abortResponse(h, err)
				return
			}
			if f.afterResponse(h, act) {
				return
			}
		}
	}
	f.finish(h)
}

// afterResponse is after for the response phase; true means the context is finished.
func (f *Filter) afterResponse(h *httpCtx, act uint64) bool {
	if h.paused {
		if err := f.wait(h); err != nil {
			f.abortResponse(h, err)
			return true
		}
	}
	if lr := h.local; lr != nil {
		lr.apply(&h.c.Response)
		f.finish(h)
		return true
	}
	return false
}

// finish ends the HTTP context: proxy_on_done, proxy_on_log, proxy_on_delete.
func (f *Filter) finish(h *httpCtx) {
	v := h.v
	v.mu.Lock()
	id := uint64(h.id)
	if !v.dead.Load() {
		if _, err := v.call(h, v.onDone, id); err == nil {
			if _, err := v.call(h, v.onLog, id); err == nil {
				_, _ = v.call(h, v.onDelete, id)
			}
		}
	}
	delete(v.contexts, h.id)
	v.mu.Unlock()
	f.recycle(h)
}

func (f *Filter) recycle(h *httpCtx) {
	h.drain()
	*h = httpCtx{resume: h.resume}
	httpCtxPool.Put(h)
}

// abort ends a request whose callback faulted: the instance is gone, the request is answered
// per the fail policy.
func (f *Filter) abort(h *httpCtx, err error) filter.Status {
	c := h.c
	f.finish(h)
	return f.fail(c, fasthttp.StatusInternalServerError, err)
}

// abortResponse is abort in the response phase: closed drops the upstream's response and
// answers 500; open lets the response through as it is.
func (f *Filter) abortResponse(h *httpCtx, err error) {
	c := h.c
	f.finish(h)
	if !f.p.spec.FailOpen {
		closeConn := c.Response.ConnectionClose()
		c.Response.Reset()
		if closeConn {
			c.Response.SetConnectionClose()
		}
	}
	f.fail(c, fasthttp.StatusInternalServerError, err)
}

// fail answers per the fail policy: open skips the plugin, closed replies with status.
func (f *Filter) fail(c *filter.Ctx, status int, err error) filter.Status {
	f.p.c.Stats().Failures.Add(1)
	if f.p.spec.FailOpen {
		c.SetReason("plugin " + f.name + " skipped (fail open): " + err.Error())
		return filter.Continue
	}
	return c.Fail(status, fmt.Errorf("plugin %q: %w", f.name, err))
}
