package telemetry

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Kind says how a metric's value moves.
type Kind uint8

const (
	// CounterKind only grows (calls, errors).
	CounterKind Kind = iota
	// GaugeKind goes up and down (live instances).
	GaugeKind
)

// A Metric is one value a component reports. Components register theirs once, when they are
// built, keep the pointer and update it with an atomic add on the hot path: no lookup, no lock
// and no allocation per request.
type Metric struct {
	v atomic.Int64
	// kind is fixed at registration, so an exporter can type the metric.
	kind Kind
}

// Add adds n (negative for a gauge going down).
func (m *Metric) Add(n int64) { m.v.Add(n) }

// Load returns the current value.
func (m *Metric) Load() int64 { return m.v.Load() }

// key names a metric: its group (the kind of component: "plugins"), the component within the
// group (a plugin's name) and the metric ("calls").
type key struct{ group, member, name string }

// Registry holds named metrics. It is the one place every counter goes: the admin API reads
// it, and an exporter can publish all of it without knowing any component.
type Registry struct {
	mu      sync.Mutex
	metrics map[key]*Metric
	exports map[string]Export // by group; see Export
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{metrics: map[key]*Metric{}} }

// Metrics is the gateway's registry. Metrics are kept for the life of the process, across
// reloads, so a counter of a component that a reload rebuilds goes on growing.
var Metrics = NewRegistry()

// Counter returns the counter name of member in group, creating it at zero the first time;
// later calls return the same metric.
func (r *Registry) Counter(group, member, name string) *Metric {
	return r.metric(key{group, member, name}, CounterKind)
}

// Gauge is Counter for a value that goes up and down.
func (r *Registry) Gauge(group, member, name string) *Metric {
	return r.metric(key{group, member, name}, GaugeKind)
}

func (r *Registry) metric(k key, kind Kind) *Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.metrics[k]; ok {
		if m.kind != kind {
			panic(fmt.Sprintf("telemetry: %s/%s/%s registered as two kinds", k.group, k.member, k.name))
		}
		return m
	}
	m := &Metric{kind: kind}
	r.metrics[k] = m
	return m
}

// Group returns the current values of a group's metrics, by member and then by name: for
// "plugins", {"hello": {"calls": 3, "traps": 0, …}}. It is never nil.
func (r *Registry) Group(group string) map[string]map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]int64{}
	for k, m := range r.metrics {
		if k.group != group {
			continue
		}
		vals := out[k.member]
		if vals == nil {
			vals = map[string]int64{}
			out[k.member] = vals
		}
		vals[k.name] = m.Load()
	}
	return out
}

// Sum returns the total of the metric name over every member of group: the live instances of
// every plugin, for example.
func (r *Registry) Sum(group, name string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for k, m := range r.metrics {
		if k.group == group && k.name == name {
			n += m.Load()
		}
	}
	return n
}
