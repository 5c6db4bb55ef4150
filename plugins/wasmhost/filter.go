package wasmhost

import (
	"errors"
	"fmt"
	"io"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/httpwasm"
)

// Filter runs a plugin on a route. handle_request runs in OnRequest; when the guest continues,
// the same instance is kept in the request's Ctx slot and handle_response runs on it in
// OnResponse, as the ABI requires (guests correlate the two calls through instance memory).
type Filter struct {
	m       *Module
	slot    int
	name    string
	release func() error
}

var _ filter.Filter = (*Filter)(nil)
var _ io.Closer = (*Filter)(nil)

// NewFilter returns the plugin described by spec as a filter for env's route. The module comes
// from env.Shared, keyed by spec.Key(), so every route and snapshot with the same plugin and
// settings shares one compiled module and pool, and a reload that keeps them keeps it warm.
func NewFilter(env filter.Env, spec Spec) (*Filter, error) {
	v, release, err := env.Shared.Acquire(spec.Key(), func() (io.Closer, error) {
		return Load(spec, env.Log.With().Str("plugin", spec.Name).Logger())
	})
	if err != nil {
		var inner error = err
		// Shared wraps with its key, which means nothing to a config author.
		if u := errors.Unwrap(err); u != nil {
			inner = u
		}
		return nil, fmt.Errorf("load plugin %q: %w", spec.Name, inner)
	}
	return &Filter{m: v.(*Module), slot: env.Slot, name: spec.Name, release: release}, nil
}

// Module returns the filter's module.
func (f *Filter) Module() *Module { return f.m }

// OnRequest calls handle_request on a pooled instance.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	m := f.m
	in, err := m.get()
	if err != nil {
		return f.fail(c, fasthttp.StatusServiceUnavailable, err)
	}
	in.state.Begin(c.RequestCtx)
	if err := in.call(in.req); err != nil {
		m.stats.Calls.Add(1)
		if err != errStale {
			m.discard(in)
			return f.fault(c, err)
		}
		defer m.discard(in)
		if in.stack[0]&1 == 0 {
			return filter.Stop
		}
		// Too late to keep this instance for the response; continue without it.
		return filter.Continue
	}
	ctxNext := in.stack[0]
	if ctxNext&1 == 0 {
		// The guest wrote the response (or accepted the default empty 200).
		m.stats.Calls.Add(1)
		m.put(in)
		return filter.Stop
	}
	in.reqCtx = uint32(ctxNext >> 32)
	in.state.Next()
	*c.Slot(f.slot) = in
	return filter.Continue
}

// OnResponse calls handle_response on the instance OnRequest kept, then returns it to the pool.
func (f *Filter) OnResponse(c *filter.Ctx) {
	slot := c.Slot(f.slot)
	in, ok := (*slot).(*instance)
	*slot = nil
	if !ok {
		return // fail open skipped the plugin, or the instance could not be kept
	}
	m := f.m
	failed := c.Err() != nil // the host failed to produce a response
	// handle_request's call is counted here with handle_response's: one shared atomic add per
	// request rather than two. OnResponse runs for every request whose handle_request
	// continued, so the count is only late, never lost.
	if err := in.state.MergeResponse(failed); err != nil {
		m.stats.Calls.Add(1)
		// The guest's response could not be put back together with the upstream's; the
		// instance is fine, but handle_response has nothing true to look at.
		m.put(in)
		f.faultResponse(c, err)
		return
	}
	in.state.Respond()
	in.stack[0] = uint64(in.reqCtx)
	in.stack[1] = 0
	if failed {
		in.stack[1] = 1
	}
	m.stats.Calls.Add(2)
	if err := in.call(in.resp); err != nil {
		m.discard(in)
		if err != errStale {
			f.faultResponse(c, err)
		}
		return
	}
	m.put(in)
}

// fault counts a failed guest call and answers per the fail policy. A host refusal that carries
// a status (a body over max_body_bytes) answers with it whatever the policy: the body has been
// partly read, so the request cannot go on as if the plugin were not there.
func (f *Filter) fault(c *filter.Ctx, err error) filter.Status {
	var t *httpwasm.Trap
	if errors.As(err, &t) && t.Status != 0 {
		f.m.stats.Failures.Add(1)
		if t.Status == fasthttp.StatusRequestEntityTooLarge {
			// The rest of the request body was never read: the connection cannot carry another
			// request.
			c.Response.SetConnectionClose()
		}
		return c.Fail(t.Status, fmt.Errorf("plugin %q: %w", f.name, err))
	}
	if errors.Is(err, errTimeout) {
		f.m.stats.Timeouts.Add(1)
	} else {
		f.m.stats.Traps.Add(1)
	}
	return f.fail(c, fasthttp.StatusInternalServerError, err)
}

// faultResponse is fault in handle_response. When the gateway answers itself, the upstream's
// response is dropped first, headers included: its Content-Encoding, Content-Length or cookies
// do not belong on the gateway's error body.
func (f *Filter) faultResponse(c *filter.Ctx, err error) {
	var t *httpwasm.Trap
	if !f.m.spec.FailOpen || (errors.As(err, &t) && t.Status != 0) {
		closeConn := c.Response.ConnectionClose()
		c.Response.Reset()
		if closeConn {
			c.Response.SetConnectionClose()
		}
	}
	f.fault(c, err)
}

// fail answers per the fail policy: open skips the plugin, closed replies with status.
func (f *Filter) fail(c *filter.Ctx, status int, err error) filter.Status {
	f.m.stats.Failures.Add(1)
	if f.m.spec.FailOpen {
		c.SetReason("plugin " + f.name + " skipped (fail open): " + err.Error())
		return filter.Continue
	}
	return c.Fail(status, fmt.Errorf("plugin %q: %w", f.name, err))
}

// Close releases the filter's reference on the shared module.
func (f *Filter) Close() error { return f.release() }
