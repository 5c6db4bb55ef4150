// Package promtest reads series back from the gateway's Prometheus registry (telemetry.Prom) in
// tests: the tests of the engine, the proxy, the plugin host and the filters assert exact
// counter values and histogram counts with it. Only _test.go files import it, so it is never
// linked into the weir binary.
package promtest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/weir-gateway/weir/core/telemetry"
)

// Value returns one series of telemetry.Prom: a counter's or gauge's value, or a histogram's
// sample count. labels are name, value pairs the series must carry (others may be there too);
// a series that does not exist reads 0.
func Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	fams, err := telemetry.Prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !matches(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] {
				found = l.GetValue() == labels[i+1]
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
