package balance

import (
	"errors"
	"testing"
	"time"
)

func TestRegistryReuse(t *testing.T) {
	r := NewRegistry()
	first, err := r.Targets([]string{"a:1", "b:1", "c:1"}, []int{1, 2, 3})
	if err != nil {
		t.Fatalf("Targets: %v", err)
	}
	// Live state that must survive the reload.
	first[0].SetAvailable(false)
	first[1].Begin()
	first[1].observe(float64(7*time.Millisecond), false, nanotime())

	second, err := r.Targets([]string{"b:1", "d:1", "a:1"}, []int{5, 1, 1})
	if err != nil {
		t.Fatalf("Targets: %v", err)
	}
	if second[0] != first[1] || second[2] != first[0] {
		t.Fatal("reload: kept addresses got new *Target values")
	}
	if second[1].Addr != "d:1" || second[1].InFlight() != 0 || !second[1].Available() {
		t.Errorf("new target d:1: %+v, want a fresh available target", second[1])
	}
	if got := second[0].Weight(); got != 5 {
		t.Errorf("b:1 weight %d, want 5", got)
	}
	if second[2].Available() {
		t.Error("a:1 lost its health state")
	}
	if second[0].InFlight() != 1 || second[0].EWMA() == 0 {
		t.Errorf("b:1 in flight %d, EWMA %v: lost its load", second[0].InFlight(), second[0].EWMA())
	}
	if _, ok := r.Lookup("c:1"); ok {
		t.Error("removed c:1 still in the registry")
	}
	if r.Len() != 3 {
		t.Errorf("Len = %d, want 3", r.Len())
	}

	// A removed address that comes back starts fresh.
	third, err := r.Targets([]string{"c:1"}, nil)
	if err != nil {
		t.Fatalf("Targets: %v", err)
	}
	if third[0] == first[2] || third[0].Weight() != 1 {
		t.Errorf("c:1 came back as the old target or with weight %d; want fresh, weight 1", third[0].Weight())
	}
}

// TestRegistryWeightChangeSparesOldBalancer checks that a reload changing a weight leaves the
// balancer of the running snapshot serving the old weights.
func TestRegistryWeightChangeSparesOldBalancer(t *testing.T) {
	r := NewRegistry()
	ts, _ := r.Targets([]string{"a:1", "b:1"}, []int{3, 1})
	old := mustNew(t, RoundRobin, ts, Options{})
	if _, err := r.Targets([]string{"a:1", "b:1"}, []int{1, 3}); err != nil {
		t.Fatalf("Targets: %v", err)
	}
	got := count(t, old, 2, 4000)
	if got[0] != 3000 || got[1] != 1000 {
		t.Errorf("old balancer after reload: picks %v, want [3000 1000]", got)
	}
}

func TestRegistryRejects(t *testing.T) {
	tests := []struct {
		name    string
		addrs   []string
		weights []int
		want    error // nil: any error
	}{
		{"duplicate", []string{"a:1", "a:1"}, nil, ErrDuplicateTarget},
		{"bad weight", []string{"a:1"}, []int{0}, ErrBadWeight},
		{"weight too large", []string{"a:1"}, []int{MaxWeight + 1}, ErrBadWeight},
		{"length mismatch", []string{"a:1"}, []int{1, 2}, nil},
		{"empty address", []string{""}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRegistry()
			before, _ := r.Targets([]string{"z:1"}, nil)
			_, err := r.Targets(tt.addrs, tt.weights)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Targets: got error %v, want %v", err, tt.want)
			}
			if got, ok := r.Lookup("z:1"); !ok || got != before[0] || r.Len() != 1 {
				t.Error("failed Targets changed the registry")
			}
		})
	}
}
