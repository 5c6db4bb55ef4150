package wasmhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/weir-gateway/weir/core/telemetry"
)

// This file is the ABI-neutral part of the host, for plugin ABIs other than http-wasm (which
// keeps its pooled Module): a module compiled under the same rules (interrupt checks, sealed
// compilation cache, memory cap) and instances whose every call runs under the plugin's
// deadline, watched by the same watchdog. The ABI package registers its own host modules in
// Runtime before it instantiates, and decides what an instance is for.

// Compiled is a plugin module compiled for an ABI that manages its own instances. It is safe
// for concurrent use.
type Compiled struct {
	spec         Spec
	instrumented bool
	log          zerolog.Logger
	rt           wazero.Runtime
	code         wazero.CompiledModule
	stats        *Counters

	mu     sync.Mutex
	guests map[*Guest]struct{}
	closed atomic.Bool
}

// Compile compiles spec.Wasm the way Load does, with the same instrumentation, compilation
// cache and memory cap, but creates no instance: the caller registers its ABI's host modules
// in Runtime and then calls Instantiate.
func Compile(spec Spec, log zerolog.Logger) (_ *Compiled, err error) {
	spec.defaults()
	rt, code, instrumented, err := compileModule(spec, log)
	if err != nil {
		return nil, err
	}
	c := &Compiled{
		spec:         spec,
		instrumented: instrumented,
		log:          log,
		rt:           rt,
		code:         code,
		stats:        counters(spec.Name),
		guests:       map[*Guest]struct{}{},
	}
	watch.watch(c, spec.Timeout)
	return c, nil
}

// Spec returns the spec with defaults applied.
func (c *Compiled) Spec() Spec { return c.spec }

// Runtime is the module's wazero runtime, where the ABI registers its host modules.
func (c *Compiled) Runtime() wazero.Runtime { return c.rt }

// Code is the compiled module, for export and import checks.
func (c *Compiled) Code() wazero.CompiledModule { return c.code }

// Stats returns the plugin's counters (the same ones an http-wasm plugin has).
func (c *Compiled) Stats() *Counters { return c.stats }

// Instantiate creates an instance in the plugin's sandbox (no filesystem, environment,
// arguments or network; real clocks; crypto randomness; stdout and stderr to the log) and runs
// its start functions. value is what ctx.Value(key) returns in host functions called during
// start and during every later Call, which is how the ABI's host functions find the
// instance's state.
func (c *Compiled) Instantiate(key, value any) (*Guest, error) {
	if c.closed.Load() {
		return nil, errClosed
	}
	g := &Guest{owner: c}
	g.ctx = guestCtx{key: key, value: value, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key, value), initTimeout)
	defer cancel()
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions("_initialize", "_start").
		WithStdout(logWriter{log: c.log, level: zerolog.InfoLevel, stream: "stdout"}).
		WithStderr(logWriter{log: c.log, level: zerolog.WarnLevel, stream: "stderr"}).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	mod, err := c.rt.InstantiateModule(ctx, c.code, mc)
	if err != nil {
		c.stats.InstantiateErrors.Add(1)
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 0 {
			return nil, errors.New("instantiate: the guest exited during start; build it as a reactor (no main that exits)")
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("instantiate: start functions ran past %s", initTimeout)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	g.Mod = mod
	if c.instrumented {
		g.interrupt, _ = mod.ExportedGlobal(InterruptExport).(api.MutableGlobal)
		if g.interrupt == nil {
			_ = mod.Close(context.Background())
			return nil, errors.New("instantiate: the interrupt flag is not exported")
		}
	}
	c.mu.Lock()
	c.guests[g] = struct{}{}
	c.mu.Unlock()
	c.stats.Instances.Add(1)
	c.stats.Created.Add(1)
	return g, nil
}

// expireOverdue expires the calls that have run for limit ticks (the watchdog's loop).
func (c *Compiled) expireOverdue(now, limit int64) {
	c.mu.Lock()
	for g := range c.guests {
		if s := g.callStart.Load(); s > 0 && now-s >= limit && g.callStart.CompareAndSwap(s, -1) {
			g.expire()
		}
	}
	c.mu.Unlock()
}

// Close closes every instance and the runtime.
func (c *Compiled) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	watch.remove(c)
	c.mu.Lock()
	all := make([]*Guest, 0, len(c.guests))
	for g := range c.guests {
		all = append(all, g)
	}
	c.mu.Unlock()
	for _, g := range all {
		g.Close()
	}
	if err := c.rt.Close(context.Background()); err != nil {
		return fmt.Errorf("close plugin %q runtime: %w", c.spec.Name, err)
	}
	return nil
}

// Guest is one instance of a Compiled module. It is not safe for concurrent use: the ABI
// serialises its calls (one lock per instance).
type Guest struct {
	owner *Compiled
	// Mod is the instantiated module.
	Mod       api.Module
	ctx       guestCtx
	callStart atomic.Int64
	interrupt api.MutableGlobal
	closed    atomic.Bool
	// calls counts this instance's calls, to time one in telemetry.PluginTimingSample.
	calls atomic.Uint32
}

// guestCtx is callCtx for a Guest: one reused context per instance whose Done closes when the
// watchdog expires a call, and whose Value hands host functions the ABI's state.
type guestCtx struct {
	key, value any
	done       chan struct{}
	expired    atomic.Bool
}

func (c *guestCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *guestCtx) Done() <-chan struct{}       { return c.done }
func (c *guestCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}
func (c *guestCtx) Value(key any) any {
	if key == c.key {
		return c.value
	}
	return nil
}

func (g *Guest) expire() {
	if g.ctx.expired.CompareAndSwap(false, true) {
		close(g.ctx.done)
	}
	if g.interrupt != nil {
		g.interrupt.Set(1)
	}
}

// Call runs fn with stack (params in, results out) under the plugin's deadline and counts it.
// A non-nil error means the instance must be discarded (Close): it trapped, ran past its
// deadline (IsTimeout), or its deadline fired as the call returned (the results are still
// good then, and IsStale says so).
func (g *Guest) Call(fn api.Function, stack []uint64) error {
	g.owner.stats.Calls.Add(1)
	var t0 time.Time
	if g.calls.Add(1)%telemetry.PluginTimingSample == 0 {
		t0 = time.Now()
	}
	start := watch.tick.Load()
	g.callStart.Store(start)
	err := fn.CallWithStack(&g.ctx, stack)
	stopped := g.callStart.CompareAndSwap(start, 0)
	if !t0.IsZero() {
		g.owner.stats.CallDuration.Observe(time.Since(t0))
	}
	if err != nil {
		var exit *sys.ExitError
		if g.ctx.expired.Load() || (errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded) {
			g.owner.stats.Timeouts.Add(1)
			return errTimeout
		}
		g.owner.stats.Traps.Add(1)
		return err
	}
	if !stopped {
		return errStale
	}
	return nil
}

// IsTimeout reports whether err from Call is a call stopped at its deadline.
func IsTimeout(err error) bool { return errors.Is(err, errTimeout) }

// IsStale reports whether err from Call is a call that completed (its results are good) but
// left the instance unusable because its deadline fired as it returned.
func IsStale(err error) bool { return errors.Is(err, errStale) }

// Close discards the instance; it is safe to call more than once.
func (g *Guest) Close() {
	if !g.closed.CompareAndSwap(false, true) {
		return
	}
	_ = g.Mod.Close(context.Background())
	c := g.owner
	c.mu.Lock()
	_, ok := c.guests[g]
	delete(c.guests, g)
	c.mu.Unlock()
	if ok {
		c.stats.Instances.Add(-1)
	}
}

// Discard closes an instance that faulted and counts it.
func (g *Guest) Discard() {
	if !g.closed.Load() {
		g.owner.stats.Discarded.Add(1)
	}
	g.Close()
}
