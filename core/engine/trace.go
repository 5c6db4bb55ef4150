package engine

import (
	"context"
	"io"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry/tracing"
)

// newTracer builds the tracer of the tracing section, or nil when tracing is off. It is built
// once, at start: the section is restart-only (see RestartOnly), like the access log.
func newTracer(cfg *config.Config, log zerolog.Logger) (*tracing.Tracer, error) {
	t := cfg.Tracing
	if !t.Enabled {
		return nil, nil
	}
	return tracing.New(tracing.Options{
		Endpoint: t.Endpoint, Headers: t.Headers, ServiceName: t.ServiceName, SampleRatio: t.SampleRatio,
		Timeout: t.Timeout, MaxBatch: t.Batch.MaxSize, MaxQueue: t.Batch.MaxQueue, Interval: t.Batch.Interval,
		Log: log.With().Str("component", "tracing").Logger(),
	})
}

// flushTraces exports the spans still queued, for at most the export timeout, and stops the
// exporter. It runs after the last request drained.
func (e *Engine) flushTraces() error {
	if e.tracer == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(e.cfg.Load().Tracing.Timeout, 10*time.Second))
	defer cancel()
	return e.tracer.Shutdown(ctx)
}

// tracingAsStarted returns cfg for a reload's snapshot, with tracing on exactly when the
// engine traces: the section is restart-only, and a snapshot whose filters were wrapped for
// a tracer that does not run would pay for nothing, one without wrappers beside a running
// tracer would lose its filter spans. cfg itself is not changed.
func (e *Engine) tracingAsStarted(cfg *config.Config) *config.Config {
	if cfg.Tracing.Enabled == (e.tracer != nil) {
		return cfg
	}
	cp := *cfg
	cp.Tracing.Enabled = e.tracer != nil
	return &cp
}

// beginTrace starts the request's trace once it is routed (route "" when nothing matched).
func (e *Engine) beginTrace(r *request, route string) {
	if e.tracer != nil {
		r.trace.Begin(e.tracer, &r.Ctx, route)
	}
}

// endTrace ends the server span once the response is ready.
func (e *Engine) endTrace(r *request) {
	if e.tracer != nil {
		r.trace.End(&r.Ctx)
	}
}

// traced wraps f, the filter or plugin at index slot of a route, so that a sampled request
// records a span for it. It returns f itself when tracing is off: then the pipeline is exactly
// what it would be without tracing.
func traced(cfg *config.Config, f filter.Filter, slot int, name string) filter.Filter {
	if !cfg.Tracing.Enabled {
		return f
	}
	kind := "filter"
	if _, ok := cfg.Plugins[name]; ok {
		kind = "plugin"
	}
	return &tracedFilter{f: f, slot: slot, span: kind + " " + name,
		attrs: []attribute.KeyValue{attribute.String("weir.filter.name", name), attribute.String("weir.filter.kind", kind)}}
}

// tracedFilter opens a span when its filter's OnRequest starts and closes it when the filter's
// work on the request is over: after its OnResponse, or at once when its OnRequest stopped the
// chain (then OnResponse does not run). The spans of the filters after it and of the upstream
// call nest inside, as the pipeline runs them.
type tracedFilter struct {
	f     filter.Filter
	slot  int
	span  string
	attrs []attribute.KeyValue
}

func (t *tracedFilter) OnRequest(c *filter.Ctx) filter.Status {
	r := tracing.From(c)
	if !r.Sampled() {
		return t.f.OnRequest(c)
	}
	r.StartFilter(t.slot, t.span, t.attrs)
	st := t.f.OnRequest(c)
	if st != filter.Continue {
		r.EndFilter(t.slot, c, true)
	}
	return st
}

func (t *tracedFilter) OnResponse(c *filter.Ctx) {
	t.f.OnResponse(c)
	if r := tracing.From(c); r.Sampled() {
		r.EndFilter(t.slot, c, false)
	}
}

// Close closes the wrapped filter when it holds resources (Pipeline.Close looks for io.Closer).
func (t *tracedFilter) Close() error {
	if cl, ok := t.f.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}
