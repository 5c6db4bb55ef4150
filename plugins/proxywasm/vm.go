package proxywasm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/wasmhost"
)

// rootID is the id of each instance's root context (the plugin context of the ABI).
const rootID = 1

// stateKey finds an instance's vm in the context of its host function calls.
type stateKey struct{}

// vm is one long-lived instance of a plugin: its root context and the HTTP contexts of the
// requests pinned to it. mu is held for each callback and for nothing else, so a request that
// is paused, or waiting for its upstream, holds no lock.
type vm struct {
	p    *plugin
	g    *wasmhost.Guest
	mu   sync.Mutex
	dead atomic.Bool

	alloc                                         api.Function
	onContextCreate, onVMStart, onConfigure       api.Function
	onRequestHeaders, onRequestBody               api.Function
	onResponseHeaders, onResponseBody             api.Function
	onRequestTrailers, onResponseTrailers         api.Function
	onDone, onLog, onDelete, onTick, onQueueReady api.Function
	onHTTPCallResponse                            api.Function
	stack                                         [8]uint64
	allocStack                                    [1]uint64
	nextID                                        uint32
	contexts                                      map[uint32]*httpCtx
	queues                                        []uint32 // registered by this instance
	rootProps                                     map[string][]byte
	tickStop                                      chan struct{}
	scratch                                       []byte

	// Guarded by mu, meaningful during a callback:
	// cur is the effective HTTP context (nil: the root context); configBuffer is the
	// configuration proxy_get_configuration returns (v0.1.0).
	cur          *httpCtx
	configBuffer int
	// callResp is the response proxy_on_http_call_response is reading (nil: none, or the
	// callout failed); callouts counts this instance's callouts in flight, nextCallout numbers
	// them.
	callResp    *fasthttp.Response
	callouts    int
	nextCallout uint32
}

// httpCtx is one request's HTTP context. It lives from OnRequest to the end of OnResponse (or
// to the local reply that stopped the chain) on the instance it was created on.
type httpCtx struct {
	id uint32
	v  *vm
	f  *Filter
	c  *filter.Ctx
	// response is set once the response phase has begun.
	response bool
	// reqChunked and respChunked tell that the request's or the response's body is chunked,
	// the only framing that carries trailers.
	reqChunked, respChunked bool
	// paused is set (under v.mu) while the request goroutine waits for a resume, the only time
	// another callback (a tick, a queue) may act on this context.
	paused bool
	resume chan struct{}
	local  *localReply
	// headerBytes is what the guest may still write into headers in this request.
	headerBytes int
	props       map[string][]byte
}

type localReply struct {
	status    int
	body      []byte
	headers   [][2][]byte
	closeConn bool
}

var httpCtxPool = sync.Pool{New: func() any { return &httpCtx{resume: make(chan struct{}, 1)} }}

func (h *httpCtx) drain() {
	select {
	case <-h.resume:
	default:
	}
}

// signal resumes a paused request; it never blocks.
func (h *httpCtx) signal() {
	select {
	case h.resume <- struct{}{}:
	default:
	}
}

var (
	errDead         = errors.New("plugin instance was discarded after a fault")
	errPauseTimeout = errors.New("paused request was not resumed in time")
)

// newVM instantiates the module and starts its root context: proxy_on_context_create(root, 0),
// proxy_on_vm_start and proxy_on_configure, either of which may refuse.
func (p *plugin) newVM() (*vm, error) {
	v := &vm{p: p, nextID: rootID + 1, contexts: map[uint32]*httpCtx{}}
	g, err := p.c.Instantiate(stateKey{}, v)
	if err != nil {
		return nil, err
	}
	v.g = g
	fn := g.Mod.ExportedFunction
	v.alloc = fn("proxy_on_memory_allocate")
	if v.alloc == nil {
		v.alloc = fn("malloc")
	}
	v.onContextCreate = fn("proxy_on_context_create")
	v.onVMStart = fn("proxy_on_vm_start")
	v.onConfigure = fn("proxy_on_configure")
	v.onRequestHeaders = fn("proxy_on_request_headers")
	v.onRequestBody = fn("proxy_on_request_body")
	v.onResponseHeaders = fn("proxy_on_response_headers")
	v.onResponseBody = fn("proxy_on_response_body")
	v.onRequestTrailers = fn("proxy_on_request_trailers")
	v.onResponseTrailers = fn("proxy_on_response_trailers")
	v.onDone = fn("proxy_on_done")
	v.onLog = fn("proxy_on_log")
	v.onDelete = fn("proxy_on_delete")
	v.onTick = fn("proxy_on_tick")
	v.onQueueReady = fn("proxy_on_queue_ready")
	v.onHTTPCallResponse = fn("proxy_on_http_call_response")
	if v.alloc == nil {
		g.Close()
		return nil, errors.New("the module exports neither proxy_on_memory_allocate nor malloc, which the host needs to return data")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	fail := func(err error) (*vm, error) {
		v.kill()
		return nil, err
	}
	if _, err := v.call(nil, v.onContextCreate, rootID, 0); err != nil {
		return fail(fmt.Errorf("proxy_on_context_create (root): %w", err))
	}
	v.configBuffer = bufferVMConfiguration
	ok, err := v.call(nil, v.onVMStart, rootID, 0)
	if err != nil {
		return fail(fmt.Errorf("proxy_on_vm_start: %w", err))
	}
	if v.onVMStart != nil && uint32(ok) == 0 {
		return fail(errors.New("proxy_on_vm_start returned false: the plugin refused to start"))
	}
	v.configBuffer = bufferPluginConfig
	ok, err = v.call(nil, v.onConfigure, rootID, uint64(len(p.spec.Config)))
	if err != nil {
		return fail(fmt.Errorf("proxy_on_configure: %w", err))
	}
	if v.onConfigure != nil && uint32(ok) == 0 {
		return fail(errors.New("proxy_on_configure returned false: the plugin refused its config"))
	}
	v.configBuffer = bufferPluginConfig
	return v, nil
}

// call runs a callback on context h (nil: the root context) with v.mu held. A nil fn (not
// exported) does nothing. An error means the instance is dead.
func (v *vm) call(h *httpCtx, fn api.Function, args ...uint64) (uint64, error) {
	if fn == nil {
		return 0, nil
	}
	if v.dead.Load() {
		return 0, errDead
	}
	v.cur = h
	n := copy(v.stack[:], args)
	for i := n; i < len(v.stack); i++ {
		v.stack[i] = 0
	}
	err := v.g.Call(fn, v.stack[:])
	v.cur = nil
	if err != nil {
		v.fault(fn, err)
		if wasmhost.IsStale(err) {
			return v.stack[0], nil // the call completed; only the instance is gone
		}
		return 0, fmt.Errorf("%s: %w", fn.Definition().Name(), err)
	}
	return v.stack[0], nil
}

// fault discards the instance after a trap or timeout (v.mu held).
func (v *vm) fault(fn api.Function, err error) {
	if v.dead.Load() {
		return
	}
	if !wasmhost.IsStale(err) {
		v.p.log.Error().Err(err).Str("callback", fn.Definition().Name()).Msg("plugin instance faulted; discarded")
	}
	v.kill()
}

// kill marks the instance dead, closes it and wakes the requests paused on it (v.mu held).
func (v *vm) kill() {
	if !v.dead.CompareAndSwap(false, true) {
		return
	}
	if v.tickStop != nil {
		close(v.tickStop)
		v.tickStop = nil
	}
	for _, h := range v.contexts {
		h.signal()
	}
	v.p.vmID.dropQueues(v)
	v.g.Discard()
}

// newContext registers a new HTTP context (v.mu held).
func (v *vm) newContext(h *httpCtx) {
	for {
		id := v.nextID
		v.nextID++
		if id <= rootID {
			continue
		}
		if _, used := v.contexts[id]; !used {
			h.id = id
			v.contexts[id] = h
			return
		}
	}
}

// setTick starts, changes or stops the root context's timer (v.mu held).
func (v *vm) setTick(ms uint32) {
	if v.tickStop != nil {
		close(v.tickStop)
		v.tickStop = nil
	}
	if ms == 0 || v.onTick == nil || v.dead.Load() {
		return
	}
	stop := make(chan struct{})
	v.tickStop = stop
	go v.ticker(time.Duration(ms)*time.Millisecond, stop)
}

func (v *vm) ticker(d time.Duration, stop chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		v.mu.Lock()
		select {
		case <-stop:
			v.mu.Unlock()
			return
		default:
		}
		_, _ = v.call(nil, v.onTick, rootID)
		v.mu.Unlock()
	}
}

// queueReady tells the root context an item was enqueued on a queue it registered.
func (v *vm) queueReady(id uint32) {
	if v.onQueueReady == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	_, _ = v.call(nil, v.onQueueReady, rootID, uint64(id))
}

// close stops the timer; the module's Close discards the instance itself.
func (v *vm) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tickStop != nil {
		close(v.tickStop)
		v.tickStop = nil
	}
	v.dead.Store(true)
	for _, h := range v.contexts {
		h.signal()
	}
}
