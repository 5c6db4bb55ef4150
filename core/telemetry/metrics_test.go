package telemetry

import (
	"reflect"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	calls := r.Counter("plugins", "hello", "calls")
	if again := r.Counter("plugins", "hello", "calls"); again != calls {
		t.Fatal("a second registration returned another metric")
	}
	calls.Add(3)
	r.Gauge("plugins", "hello", "instances").Add(2)
	r.Gauge("plugins", "spin", "instances").Add(1)
	r.Counter("upstreams", "api", "calls").Add(7)

	groups := []struct {
		group string
		want  map[string]map[string]int64
	}{
		{"plugins", map[string]map[string]int64{"hello": {"calls": 3, "instances": 2}, "spin": {"instances": 1}}},
		{"upstreams", map[string]map[string]int64{"api": {"calls": 7}}},
		{"none", map[string]map[string]int64{}},
	}
	for _, tt := range groups {
		if got := r.Group(tt.group); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Group(%q) = %v, want %v", tt.group, got, tt.want)
		}
	}
	sums := []struct {
		group, name string
		want        int64
	}{
		{"plugins", "instances", 3},
		{"plugins", "calls", 3},
		{"upstreams", "instances", 0},
	}
	for _, tt := range sums {
		if got := r.Sum(tt.group, tt.name); got != tt.want {
			t.Errorf("Sum(%q, %q) = %d, want %d", tt.group, tt.name, got, tt.want)
		}
	}
}

func TestRegistryKindConflictPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("g", "m", "n")
	defer func() {
		if recover() == nil {
			t.Error("registering a counter as a gauge did not panic")
		}
	}()
	r.Gauge("g", "m", "n")
}

// TestMetricAddAllocatesNothing: metrics are updated on the hot path.
func TestMetricAddAllocatesNothing(t *testing.T) {
	m := NewRegistry().Counter("g", "m", "n")
	if n := testing.AllocsPerRun(100, func() { m.Add(1) }); n != 0 {
		t.Errorf("Add allocates %v times", n)
	}
}
