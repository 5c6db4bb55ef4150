package admin

import (
	"encoding/json"
	"testing"

	"github.com/weir-gateway/weir/core/telemetry"
)

// TestStatsTrafficGroups: the breakers', splits' and mirrors' metrics reach /stats by group.
func TestStatsTrafficGroups(t *testing.T) {
	base, _ := setup(t, "")
	telemetry.Metrics.Gauge("breakers", "stats-breaker", "state").Add(1)
	defer telemetry.Metrics.Gauge("breakers", "stats-breaker", "state").Add(-1)
	telemetry.Metrics.Counter("split", "stats-route", "canary").Add(5)
	telemetry.Metrics.Counter("mirror", "stats-route", "dropped").Add(7)

	status, body := do(t, "GET", base+"/stats", "")
	var got struct {
		Breakers map[string]map[string]int64 `json:"breakers"`
		Split    map[string]map[string]int64 `json:"split"`
		Mirror   map[string]map[string]int64 `json:"mirror"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("/stats = %d %v:\n%s", status, err, body)
	}
	tests := []struct {
		name      string
		got, want int64
	}{
		{"breakers.stats-breaker.state", got.Breakers["stats-breaker"]["state"], 1},
		{"split.stats-route.canary", got.Split["stats-route"]["canary"], 5},
		{"mirror.stats-route.dropped", got.Mirror["stats-route"]["dropped"], 7},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}
