package wasmhost

import (
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/core/telemetry/promtest"
)

// TestCallDurationSampled: one guest call in telemetry.PluginTimingSample of an instance is
// timed into weir_plugin_call_duration_seconds, and every call is counted.
func TestCallDurationSampled(t *testing.T) {
	f := newTestFilter(t, testSpec("timing", headerGuest()))
	rc := newRequest("GET", "/")
	var c filter.Ctx
	const requests = 20 // two guest calls each, on the one instance sequential requests reuse
	for range requests {
		c.Reset(rc, "r")
		if f.OnRequest(&c) != filter.Continue {
			t.Fatal("stopped")
		}
		f.OnResponse(&c)
	}
	name := f.Module().spec.Name
	checks := []struct {
		family string
		want   float64
	}{
		{"weir_plugin_call_duration_seconds", 2 * requests / telemetry.PluginTimingSample},
		{"weir_plugin_calls_total", 2 * requests},
	}
	for _, tt := range checks {
		if got := promtest.Value(t, tt.family, "plugin", name); got != tt.want {
			t.Errorf("%s{plugin=%q} = %v, want %v", tt.family, name, got, tt.want)
		}
	}
}
