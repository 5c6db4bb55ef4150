package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// mapCarrier is a carrier with one traceparent.
type mapCarrier map[string]string

func (m mapCarrier) Get(k string) string { return m[k] }
func (m mapCarrier) Set(k, v string)     { m[k] = v }
func (m mapCarrier) Keys() []string      { return nil }

// viaPropagator is what the OpenTelemetry propagator makes of a traceparent.
func viaPropagator(tp string) (trace.SpanContext, bool) {
	ctx := propagation.TraceContext{}.Extract(context.Background(), mapCarrier{"traceparent": tp})
	sc := trace.SpanContextFromContext(ctx)
	return sc, sc.IsValid()
}

// agree fails t when parseTraceparent and the propagator disagree on tp.
func agree(t *testing.T, tp string) bool {
	t.Helper()
	p, ok := parseTraceparent([]byte(tp))
	sc, want := viaPropagator(tp)
	if ok != want {
		t.Errorf("%q: valid = %v, propagator says %v", tp, ok, want)
		return false
	}
	if ok && (p.traceID != sc.TraceID() || p.spanID != sc.SpanID() || trace.TraceFlags(p.flags) != sc.TraceFlags()) {
		t.Errorf("%q: parsed %x %x %x, propagator %v", tp, p.traceID, p.spanID, p.flags, sc)
		return false
	}
	return ok
}

const (
	tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid = "00f067aa0ba902b7"
)

var traceparents = []struct {
	tp    string
	valid bool
}{
	{"00-" + tid + "-" + sid + "-01", true},
	{"00-" + tid + "-" + sid + "-00", true},
	{"00-" + tid + "-" + sid + "-03", true},  // sampled + random
	{"00-" + tid + "-" + sid + "-04", false}, // reserved bits in version 00
	{"00-" + tid + "-" + sid + "-01-", true}, // the propagator tolerates one trailing dash
	{"00-" + tid + "-" + sid + "-01-x", false},
	{"01-" + tid + "-" + sid + "-01-future-field", true}, // later versions may add fields
	{"01-" + tid + "-" + sid + "-ff", true},
	{"fe-" + tid + "-" + sid + "-01", true},
	{"ff-" + tid + "-" + sid + "-01", false},
	{"0-" + tid + "-" + sid + "-01", false},
	{"00-" + strings.ToUpper(tid) + "-" + sid + "-01", false},
	{"00-" + tid + "-" + strings.ToUpper(sid) + "-01", false},
	{"00-" + strings.Repeat("0", 32) + "-" + sid + "-01", false},
	{"00-" + tid + "-" + strings.Repeat("0", 16) + "-01", false},
	{"00-" + tid[:31] + "-" + sid + "-01", false},
	{"00-" + tid + "0-" + sid + "-01", false},
	{"00_" + tid + "_" + sid + "_01", false},
	{"00-" + tid + "-" + sid + "-1", false},
	{"00-" + tid + "-" + sid + "-0g", false},
	{" 00-" + tid + "-" + sid + "-01", false},
	{"00-" + tid + "-" + sid, false},
	{"", false},
	{"-", false},
	{"---", false},
	{"00", false},
	{"00-", false},
}

func TestParseTraceparentTable(t *testing.T) {
	for _, tt := range traceparents {
		if got := agree(t, tt.tp); got != tt.valid {
			t.Errorf("%q: valid = %v, want %v", tt.tp, got, tt.valid)
		}
	}
}

// FuzzParseTraceparent holds the allocation-free parser to the propagator's verdicts on any
// input: a traceparent one accepts and the other refuses would split the sampled path (which
// parses with the propagator) from the unsampled one.
func FuzzParseTraceparent(f *testing.F) {
	for _, tt := range traceparents {
		f.Add(tt.tp)
	}
	f.Fuzz(func(t *testing.T, tp string) {
		agree(t, tp)
	})
}

// TestFormatTraceparent checks the gateway writes what the propagator would.
func TestFormatTraceparent(t *testing.T) {
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled, trace.FlagsSampled | trace.FlagsRandom} {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: newTraceID(), SpanID: newSpanID(), TraceFlags: flags})
		m := mapCarrier{}
		propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), m)
		if got := string(formatTraceparent(nil, sc)); got != m["traceparent"] {
			t.Errorf("wrote %q, propagator %q", got, m["traceparent"])
		}
	}
}

func TestParseTraceparentAllocatesNothing(t *testing.T) {
	b := []byte("00-" + tid + "-" + sid + "-01")
	if n := testing.AllocsPerRun(100, func() { parseTraceparent(b) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
