package wasmhost

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/plugins/httpwasm"
)

// instance is one instantiated guest. It is not safe for concurrent use: the pool hands it to
// one request at a time, from handle_request to handle_response.
type instance struct {
	owner *Module
	mod   api.Module
	req   api.Function // handle_request
	resp  api.Function // handle_response
	state *httpwasm.State

	// stack is the params/results buffer of CallWithStack (two slots fit both exports).
	stack [2]uint64
	// reqCtx is the ctx half of handle_request's result, handed back to handle_response.
	reqCtx uint32

	// ctx is the context of every guest call: reused, so a call allocates nothing for it.
	ctx callCtx
	// callStart is the watchdog tick at which the running call started, 0 when idle, and -1
	// once the watchdog expired the call (see watchdog).
	callStart atomic.Int64
	// interrupt is the instrumented guest's flag; setting it traps the guest at its next
	// function entry or loop header.
	interrupt api.MutableGlobal

	closed atomic.Bool
	// calls counts this instance's calls, to time one in telemetry.PluginTimingSample.
	calls uint32
}

// callCtx is a context.Context made for one instance and reused by all its calls. Its Done
// channel closes when the watchdog expires the instance's call; wazero (WithCloseOnContextDone) then
// stops the guest at its next function entry or loop back-edge. A fired instance is discarded,
// so the channel never needs reopening. A per-call context.WithTimeout would work the same but
// allocate a context, a timer and a channel on every call.
//
// Instrumented modules (see instrument) do not watch Done; the watchdog sets their interrupt
// flag instead.
type callCtx struct {
	state   *httpwasm.State
	done    chan struct{}
	expired atomic.Bool
}

func (c *callCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *callCtx) Done() <-chan struct{}       { return c.done }
func (c *callCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// Value returns the instance's state for the host functions; wazero's own lookups find nothing.
func (c *callCtx) Value(key any) any {
	if _, ok := key.(httpwasm.StateKey); ok {
		return c.state
	}
	return nil
}

func (c *callCtx) expire() {
	if c.expired.CompareAndSwap(false, true) {
		close(c.done)
	}
}

// expire runs on the watchdog's goroutine when a call passes its deadline.
func (in *instance) expire() {
	in.ctx.expire()
	if in.interrupt != nil {
		in.interrupt.Set(1)
	}
}

// errTimeout is reported when a guest call ran past its deadline.
var errTimeout = errors.New("guest call exceeded its deadline")

// call runs fn with the instance's stack under the module's deadline. A non-nil error means the
// instance must be discarded: it trapped, timed out, or its deadline passed as it returned.
func (in *instance) call(fn api.Function) error {
	var t0 time.Time
	if in.calls++; in.calls%telemetry.PluginTimingSample == 0 {
		t0 = time.Now()
	}
	start := watch.tick.Load()
	in.callStart.Store(start)
	err := fn.CallWithStack(&in.ctx, in.stack[:])
	stopped := in.callStart.CompareAndSwap(start, 0)
	if !t0.IsZero() {
		in.owner.stats.CallDuration.Observe(time.Since(t0))
	}
	if err != nil {
		var exit *sys.ExitError
		if in.ctx.expired.Load() || (errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded) {
			return errTimeout
		}
		return err
	}
	if !stopped {
		// The call finished, but the watchdog expired it on the way out and set the interrupt:
		// the instance cannot run again. Its result is still good.
		return errStale
	}
	return nil
}

// errStale marks an instance whose call succeeded but whose deadline fired as it returned.
var errStale = errors.New("instance deadline fired after the call returned")

// close releases the guest; it is safe to call more than once.
func (in *instance) close() {
	if !in.closed.CompareAndSwap(false, true) {
		return
	}
	_ = in.mod.Close(context.Background())
	in.owner.forget(in)
}
