// Package tracing traces requests with OpenTelemetry and exports the spans over OTLP/HTTP.
//
// The engine calls Begin for every request once it is routed and End when the response is
// ready; the proxy calls StartUpstream and EndUpstream around each attempt; the pipeline
// wrapper calls StartFilter and EndFilter around each filter and plugin. A request that is not
// sampled costs a header lookup, a parse and, when it starts a trace, one random number and a
// header write: no span, no allocation. Only sampled requests create spans.
//
// Context propagation is W3C Trace Context. A valid incoming traceparent is continued (its
// trace id kept, its span the parent of the gateway's server span) and its tracestate kept; a
// malformed one, or two of them, is ignored and a new trace started, so a hostile client can
// neither break a request nor choose the shape of the gateway's trace. Sampling is parent
// based: a caller's sampled flag decides, and a new trace is sampled by the ratio of its trace
// id (sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))). The upstream receives a
// traceparent whose parent is the gateway's span for that attempt; when the request is not
// sampled it receives the incoming traceparent unchanged, or the new unsampled one.
//
// Spans are exported by the SDK's batch span processor: one goroutine posts batches to the
// collector, and a span that finds the queue full is dropped and counted (the "tracing" group
// of telemetry.Metrics: spans_exported, spans_dropped, spans_failed; at /metrics,
// weir_tracing_spans_total by result). A collector that is down or slow therefore never slows
// a request.
package tracing

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/weir-gateway/weir/core/telemetry"
)

// Options configure a Tracer (the tracing section of the config).
type Options struct {
	// Endpoint is the collector's OTLP/HTTP traces URL.
	Endpoint string
	// Headers go with every export (collector authentication).
	Headers map[string]string
	// ServiceName is the service.name of every span; Version its service.version ("" for none).
	ServiceName, Version string
	// SampleRatio is the share of new traces recorded (0..1).
	SampleRatio float64
	// Timeout bounds one export.
	Timeout time.Duration
	// MaxBatch spans go in one export, at least every Interval; MaxQueue spans may wait.
	MaxBatch, MaxQueue int
	Interval           time.Duration
	// Log receives export errors (at most one line per minute).
	Log zerolog.Logger
	// Metrics is where the tracing counters go; nil is telemetry.Metrics.
	Metrics *telemetry.Registry
}

// Tracer creates the spans of one gateway. It is safe for concurrent use.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	sampler  sdktrace.Sampler
	ratio    float64
	bound    uint64 // ratio × 2^63, TraceIDRatioBased's threshold
	prop     propagation.TraceContext
	queue    *queueGate
}

// New builds a Tracer that exports to o.Endpoint. Nothing is sent until a span ends.
func New(o Options) (*Tracer, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("tracing endpoint: %w", err)
	}
	if o.Metrics == nil {
		o.Metrics = telemetry.Metrics
	}
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(u.String()),
		otlptracehttp.WithHeaders(o.Headers),
		otlptracehttp.WithTimeout(o.Timeout),
		// A collector blip should not lose a batch; an outage must not hold the exporter (and
		// shutdown) for long: retry for at most one export timeout plus a little.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond,
			MaxInterval: 2 * time.Second, MaxElapsedTime: o.Timeout}),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing exporter: %w", err)
	}
	setErrorHandler(o.Log)
	attrs := []attribute.KeyValue{semconv.ServiceName(o.ServiceName)}
	if o.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.Version))
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	gate := newQueueGate(exp, o.MaxQueue, o.Metrics)
	bsp := sdktrace.NewBatchSpanProcessor(gate,
		sdktrace.WithMaxQueueSize(o.MaxQueue),
		sdktrace.WithMaxExportBatchSize(o.MaxBatch),
		sdktrace.WithBatchTimeout(o.Interval),
		sdktrace.WithExportTimeout(o.Timeout),
	)
	sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SampleRatio))
	p := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sampler),
		sdktrace.WithIDGenerator(idGenerator{}),
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(gate.wrap(bsp)),
	)
	return &Tracer{
		provider: p,
		tracer:   p.Tracer("github.com/weir-gateway/weir"),
		sampler:  sampler,
		ratio:    o.SampleRatio,
		bound:    uint64(o.SampleRatio * (1 << 63)),
		queue:    gate,
	}, nil
}

// Shutdown exports what is queued, waiting until ctx ends, and stops the exporter. Spans that
// end later are dropped.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// sampledRoot decides whether a new trace with id tid is recorded, as the provider's sampler
// (TraceIDRatioBased for a root span) will when the SDK starts its span with the same id (see
// idGenerator): by the trace id's last 63 bits against ratio × 2^63. Asking the sampler itself
// costs several times more, on every request; a test holds the two to the same decisions.
func (t *Tracer) sampledRoot(tid trace.TraceID) bool {
	switch {
	case t.ratio >= 1:
		return true
	case t.ratio <= 0:
		return false
	}
	return binary.BigEndian.Uint64(tid[8:16])>>1 < t.bound
}

// rootIDKey carries a trace id chosen before the span starts (see Begin) to idGenerator.
type rootIDKey struct{}

// idGenerator gives a root span the trace id Begin sampled it on, and random ids otherwise.
// math/rand/v2's global source is per-thread: no lock is taken.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(rootIDKey{}).(trace.TraceID)
	if !ok {
		tid = newTraceID()
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// At /metrics every ended span counts once, when it leaves the gateway, in
// weir_tracing_spans_total{exporter="otlp",result="exported"|"dropped"|"failed"}.
func init() {
	result := func(v string) telemetry.As { return telemetry.As{Family: "spans", Label: "result", Value: v} }
	telemetry.Metrics.Export("tracing", telemetry.Export{
		Prefix: "weir_tracing", Member: "exporter",
		As: map[string]telemetry.As{"spans_exported": result("exported"), "spans_dropped": result("dropped"),
			"spans_failed": result("failed")},
		Help: map[string]string{
			"spans": "Ended spans by what became of them: exported to the collector, dropped because the export queue was full, or failed (the collector refused them or could not be reached).",
		},
	})
}

// queueGate counts the spans that the batch processor drops. The SDK keeps its own count
// private, so the gate admits a span to the processor only while fewer than the processor's
// queue size are waiting (handed on but not yet given to the exporter): the processor's queue
// then never overflows, and every span that would have been dropped is dropped, and counted,
// here. It is also the exporter, which is how it learns that spans left the queue.
type queueGate struct {
	exp     sdktrace.SpanExporter
	limit   int64
	pending atomic.Int64

	exported, dropped, failed *telemetry.Metric
}

func newQueueGate(exp sdktrace.SpanExporter, limit int, m *telemetry.Registry) *queueGate {
	return &queueGate{
		exp: exp, limit: int64(limit),
		exported: m.Counter("tracing", "otlp", "spans_exported"),
		dropped:  m.Counter("tracing", "otlp", "spans_dropped"),
		failed:   m.Counter("tracing", "otlp", "spans_failed"),
	}
}

// ExportSpans is called by the processor's goroutine with a batch taken off its queue.
func (g *queueGate) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	g.pending.Add(-int64(len(spans)))
	err := g.exp.ExportSpans(ctx, spans)
	if err != nil {
		g.failed.Add(int64(len(spans)))
	} else {
		g.exported.Add(int64(len(spans)))
	}
	return err
}

func (g *queueGate) Shutdown(ctx context.Context) error { return g.exp.Shutdown(ctx) }

func (g *queueGate) wrap(next sdktrace.SpanProcessor) sdktrace.SpanProcessor {
	return &gatedProcessor{SpanProcessor: next, g: g}
}

type gatedProcessor struct {
	sdktrace.SpanProcessor
	g *queueGate
}

func (p *gatedProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if p.g.pending.Add(1) > p.g.limit {
		p.g.pending.Add(-1)
		p.g.dropped.Add(1)
		return
	}
	p.SpanProcessor.OnEnd(s)
}

// errorLog is where the SDK's errors (failed exports) go; lastError rate-limits it, since a
// collector that is down fails every batch.
var (
	errorLog  atomic.Pointer[zerolog.Logger]
	lastError atomic.Int64
)

func setErrorHandler(log zerolog.Logger) {
	errorLog.Store(&log)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		now := time.Now().UnixNano()
		last := lastError.Load()
		if now-last < int64(time.Minute) || !lastError.CompareAndSwap(last, now) {
			return
		}
		l := errorLog.Load()
		l.Warn().Err(err).Msg("tracing: span export failed (further failures within a minute are only counted)")
	}))
}
