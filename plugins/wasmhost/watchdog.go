package wasmhost

import (
	"sync"
	"sync/atomic"
	"time"
)

// watchdogTick is the deadline clock's resolution.
const watchdogTick = time.Millisecond

// watchdog enforces every guest call's deadline from one goroutine: a call records the tick it
// started at (an atomic load and store), and each tick the watchdog expires calls that have run
// for their module's timeout. A timer per call would cost two timer-heap operations and a
// clock read per call, about half of what a small plugin costs in all. The goroutine runs
// only while some module is loaded.
type watchdog struct {
	tick atomic.Int64

	mu      sync.Mutex
	modules map[watched]int64 // module -> its timeout in ticks
	running bool
}

// watched is a module whose instances' calls the watchdog expires: an http-wasm Module, or a
// Compiled module of another ABI.
type watched interface {
	expireOverdue(now, limit int64)
}

var watch = &watchdog{modules: map[watched]int64{}}

func init() { watch.tick.Store(1) } // 0 means idle in instance.callStart

// add starts watching m's calls.
func (w *watchdog) add(m *Module) { w.watch(m, m.spec.Timeout) }

// watch starts watching m's calls, each bounded by timeout.
func (w *watchdog) watch(m watched, timeout time.Duration) {
	// A call that started just before a tick has run one tick less than the count says, so
	// wait one more: a call is expired between timeout and timeout + one tick.
	ticks := int64((timeout+watchdogTick-1)/watchdogTick) + 1
	w.mu.Lock()
	defer w.mu.Unlock()
	w.modules[m] = ticks
	if !w.running {
		w.running = true
		go w.run()
	}
}

// remove stops watching m.
func (w *watchdog) remove(m watched) {
	w.mu.Lock()
	delete(w.modules, m)
	w.mu.Unlock()
}

func (w *watchdog) run() {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for range t.C {
		now := w.tick.Add(1)
		w.mu.Lock()
		if len(w.modules) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		for m, limit := range w.modules {
			m.expireOverdue(now, limit)
		}
		w.mu.Unlock()
	}
}

// expireOverdue expires the calls that have run for limit ticks.
func (m *Module) expireOverdue(now, limit int64) {
	m.mu.Lock()
	for in := range m.instances {
		if s := in.callStart.Load(); s > 0 && now-s >= limit && in.callStart.CompareAndSwap(s, -1) {
			in.expire()
		}
	}
	m.mu.Unlock()
}
