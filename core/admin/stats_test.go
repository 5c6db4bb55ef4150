package admin

import (
	"encoding/json"
	"testing"

	"github.com/weir-gateway/weir/core/telemetry"
)

// TestStatsReadsTelemetry: plugin counters reach /stats through telemetry.Metrics alone, in
// the shape plugins/README.md documents and bench/soak.sh parses.
func TestStatsReadsTelemetry(t *testing.T) {
	base, _ := setup(t, "")
	before := telemetry.Metrics.Sum("plugins", "instances")
	telemetry.Metrics.Counter("plugins", "stats-test", "calls").Add(3)
	live := telemetry.Metrics.Gauge("plugins", "stats-test", "instances")
	live.Add(2)
	defer live.Add(-2)

	status, body := do(t, "GET", base+"/stats", "")
	var got struct {
		Plugins         map[string]map[string]int64 `json:"plugins"`
		PluginInstances int64                       `json:"plugin_instances"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("/stats = %d %v:\n%s", status, err, body)
	}
	tests := []struct {
		name      string
		got, want int64
	}{
		{"plugins.stats-test.calls", got.Plugins["stats-test"]["calls"], 3},
		{"plugins.stats-test.instances", got.Plugins["stats-test"]["instances"], 2},
		{"plugin_instances", got.PluginInstances, before + 2},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}
