// Package filter is the contract between the gateway and everything that runs on a request:
// built-in Go filters, WebAssembly plugins and the proxy step. It depends only on fasthttp and
// zerolog so that every other package can depend on it without cycles.
package filter

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Status tells the pipeline whether to run the next filter.
type Status uint8

const (
	// Continue hands the request to the next filter (or to the upstream after the last one).
	Continue Status = iota
	// Stop ends the request phase: the response already in Ctx is sent as is.
	Stop
)

// A Filter is built once per config snapshot, shared by all requests of its route, and must be
// safe for concurrent use. Per-request state lives in *Ctx.
//
// OnResponse runs, in reverse order, exactly for the filters whose OnRequest returned Continue,
// whether the response came from the upstream or from a later filter's local reply.
type Filter interface {
	OnRequest(c *Ctx) Status
	OnResponse(c *Ctx)
}

// Decoder decodes a filter's config subtree into v, strictly: unknown keys are errors.
// Key case is preserved exactly as written in the config file.
type Decoder func(v any) error

// Env is what a factory may use while it builds a filter. It is valid only during the build.
type Env struct {
	// Route is the name of the route the filter is built for.
	Route string
	// Filter is the name the filter was configured under.
	Filter string
	// Slot is this filter's private index into Ctx slots (see Ctx.Slot).
	Slot int
	// Log is a logger already tagged with the route and filter.
	Log zerolog.Logger
	// Shared holds state that outlives one snapshot (token buckets, caches, compiled plugins).
	Shared *Shared
	// Consumers are the snapshot's callers declared under `consumers:` (nil when none are).
	Consumers *Consumers
	// Dir is the config file's directory ("" for the working directory): relative file paths
	// in a filter's config resolve against it (see Path), as plugin and key files do.
	Dir string
	// Upstreams are the snapshot's upstreams, for filters that send requests of their own
	// (HTTP callouts); nil when none can be called.
	Upstreams Upstreams
	// Upstream names the route's upstream ("" for a route that splits its traffic), for a
	// filter that sends the route's own requests again (the cache's background revalidation).
	Upstream string
}

// Path resolves a file path written in a filter's config against the config file's directory.
func (e Env) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || e.Dir == "" {
		return p
	}
	return filepath.Join(e.Dir, p)
}

// Factory builds a filter from its config. It runs at config build, never per request, so it is
// the place to parse, validate, compile regular expressions and resolve names.
// A filter that holds resources may implement io.Closer; it is closed when its snapshot retires.
type Factory func(env Env, decode Decoder) (Filter, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Factory{}
)

// Register makes a filter available to configs under name. It is called from init functions and
// panics on a duplicate name, which is a programming error.
func Register(name string, f Factory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("filter: %q registered twice", name))
	}
	registry[name] = f
}

// Lookup returns the factory registered under name.
func Lookup(name string) (Factory, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	f, ok := registry[name]
	return f, ok
}

// Names lists the registered filters, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// MaxSlots bounds how many filters of one route may keep per-request state in Ctx.
const MaxSlots = 16

// MaxParams bounds the named path parameters one route may capture.
const MaxParams = 8

// Param is one named path parameter captured by the router. Both slices point into memory that
// is valid only for the current request.
type Param struct {
	Key   string
	Value []byte
}

// Ctx is the per-request state handed to filters. It is pooled: nothing in it may be retained
// after the request ends (copy bytes before keeping them).
type Ctx struct {
	*fasthttp.RequestCtx

	// Route is the name of the matched route.
	Route string
	// Upstream is the target the request was sent to ("" for local replies); set by the proxy.
	Upstream string
	// UpstreamStatus is the status of the upstream's last answer (0 when none came), and
	// UpstreamTime the time spent waiting for answers over every attempt; set by the proxy for
	// the access log.
	UpstreamStatus int
	UpstreamTime   time.Duration

	params   [MaxParams]Param
	nparams  int
	slots    [MaxSlots]any
	err      error
	reason   string
	consumer *Consumer
	claims   Claims
	clientIP netip.Addr
	trace    any
}

// Reset clears the context for reuse with a new request.
func (c *Ctx) Reset(rc *fasthttp.RequestCtx, route string) {
	*c = Ctx{RequestCtx: rc, Route: route}
}

// Trace returns what SetTrace attached: the request's trace when tracing is on (the tracing
// package's *Request), nil otherwise. It is an opaque value here so that this package needs
// no tracing library.
func (c *Ctx) Trace() any { return c.trace }

// SetTrace attaches the request's trace (a pointer: storing it allocates nothing).
func (c *Ctx) SetTrace(t any) { c.trace = t }

// Param returns the value of the named path parameter, or nil.
func (c *Ctx) Param(key string) []byte {
	for i := 0; i < c.nparams; i++ {
		if c.params[i].Key == key {
			return c.params[i].Value
		}
	}
	return nil
}

// ParamStore exposes the parameter array to the router, which fills it without allocating.
func (c *Ctx) ParamStore() (*[MaxParams]Param, *int) { return &c.params, &c.nparams }

// Slot returns the per-request slot reserved for the filter built with Env.Slot == i.
// Filters store a pointer there (storing a pointer in an interface does not allocate).
func (c *Ctx) Slot(i int) *any { return &c.slots[i] }

// Reply writes a local response and stops the chain.
func (c *Ctx) Reply(status int, body []byte) Status {
	c.Response.ResetBody()
	c.SetStatusCode(status)
	c.Response.SetBodyRaw(body)
	return Stop
}

// Fail records err for the access log (logged once, there) and replies with a small JSON error
// body carrying the status text, never the internal error.
func (c *Ctx) Fail(status int, err error) Status {
	c.err = err
	c.Response.ResetBody()
	c.SetStatusCode(status)
	c.SetContentType("application/json")
	c.Response.SetBodyString(ErrorBody(status))
	return Stop
}

// SetReason records a short failure reason for the access log without replying.
func (c *Ctx) SetReason(reason string) { c.reason = reason }

// Err returns the error recorded by Fail, if any.
func (c *Ctx) Err() error { return c.err }

// Reason returns the failure reason for the access log: the recorded reason, else the error text.
func (c *Ctx) Reason() string {
	if c.reason != "" {
		return c.reason
	}
	if c.err != nil {
		return c.err.Error()
	}
	return ""
}

var errorBodies sync.Map // int -> string; a handful of statuses, built once each

// ErrorBody is the JSON body of a gateway-generated error: {"error":"Not Found","status":404}.
func ErrorBody(status int) string {
	if b, ok := errorBodies.Load(status); ok {
		return b.(string)
	}
	b := fmt.Sprintf(`{"error":%q,"status":%d}`+"\n", fasthttp.StatusMessage(status), status)
	errorBodies.Store(status, b)
	return b
}

// Pipeline is a route's ordered filter chain. It is immutable once built.
type Pipeline struct {
	filters []Filter
	names   []string
}

// NewPipeline returns a pipeline running filters in order; names are used in errors and logs.
func NewPipeline(filters []Filter, names []string) *Pipeline {
	return &Pipeline{filters: filters, names: names}
}

// Run executes the request phase, then terminal (the upstream call) if every filter continued,
// then the response phase in reverse for the filters that continued.
func (p *Pipeline) Run(c *Ctx, terminal func(*Ctx)) {
	n := 0
	for _, f := range p.filters {
		if f.OnRequest(c) != Continue {
			break
		}
		n++
	}
	if n == len(p.filters) {
		terminal(c)
	}
	for i := n - 1; i >= 0; i-- {
		p.filters[i].OnResponse(c)
	}
}

// Close closes every filter that holds resources and joins their errors.
func (p *Pipeline) Close() error {
	var errs []error
	for i, f := range p.filters {
		if cl, ok := f.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close filter %q: %w", p.names[i], err))
			}
		}
	}
	return errors.Join(errs...)
}
