package tracing

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// BenchmarkBeginUnsampled is what tracing costs a request it does not record: a new trace
// started and passed on, or a caller's unsampled one passed through.
func BenchmarkBeginUnsampled(b *testing.B) {
	t, err := New(Options{Endpoint: "http://127.0.0.1:1/v1/traces", ServiceName: "b", SampleRatio: 0,
		Timeout: 1e9, MaxBatch: 1, MaxQueue: 1, Interval: 1e9, Log: zerolog.Nop(), Metrics: telemetry.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	for _, tp := range []string{"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"} {
		name := "new"
		if tp != "" {
			name = "caller"
		}
		b.Run(name, func(b *testing.B) {
			var rc fasthttp.RequestCtx
			rc.Request.Header.SetMethod("GET")
			rc.Request.Header.SetHost("example.com")
			rc.Request.Header.Set("User-Agent", "bench")
			rc.Request.Header.Set("Accept", "*/*")
			var c filter.Ctx
			var r Request
			b.ReportAllocs()
			for b.Loop() {
				if tp != "" {
					rc.Request.Header.Set("traceparent", tp)
				} else {
					rc.Request.Header.Del("traceparent")
				}
				c.Reset(&rc, "a")
				r.Begin(t, &c, "a")
				r.End(&c)
			}
		})
	}
}

// TestSampledRootAgreesWithSampler: the shortcut decides every new trace as the provider's
// sampler does, so a trace Begin samples is recorded by the SDK and no other is.
func TestSampledRootAgreesWithSampler(t *testing.T) {
	for _, ratio := range []float64{0, 1e-9, 0.01, 0.25, 0.5, 0.999, 1} {
		tr, err := New(Options{Endpoint: "http://127.0.0.1:1/v1/traces", ServiceName: "t", SampleRatio: ratio,
			Timeout: 1e9, MaxBatch: 1, MaxQueue: 1, Interval: 1e9, Log: zerolog.Nop(), Metrics: telemetry.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ids := []trace.TraceID{{15: 1}, {8: 0x80}, {8: 0x7f, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff}}
		for range 20000 {
			ids = append(ids, newTraceID())
		}
		for _, id := range ids {
			want := tr.sampler.ShouldSample(sdktrace.SamplingParameters{
				ParentContext: context.Background(), TraceID: id, Kind: trace.SpanKindServer,
			}).Decision == sdktrace.RecordAndSample
			if got := tr.sampledRoot(id); got != want {
				t.Fatalf("ratio %v, trace %s: sampled %v, the sampler says %v", ratio, id, got, want)
			}
		}
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpanCountersAtMetrics: the span counters are published as one family by result, and
// pass the Prometheus linter.
func TestSpanCountersAtMetrics(t *testing.T) {
	tr, err := New(Options{Endpoint: "http://127.0.0.1:1/v1/traces", ServiceName: "t", SampleRatio: 1,
		Timeout: 1e9, MaxBatch: 1, MaxQueue: 1, Interval: 1e9, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background()) //nolint:errcheck
	tr.queue.dropped.Add(1)
	fams, err := telemetry.Prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != "weir_tracing_spans_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["exporter"] == "otlp" {
				results[labels["result"]] = true
			}
		}
	}
	if !results["exported"] || !results["dropped"] || !results["failed"] {
		t.Errorf("weir_tracing_spans_total results %v, want exported, dropped and failed", results)
	}
	problems, err := testutil.GatherAndLint(telemetry.Prom, "weir_tracing_spans_total")
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
