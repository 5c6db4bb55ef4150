package telemetry

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Export says how a group of a Registry is published at /metrics. A group without one is
// published as weir_<group>_<name>[_total]{name="<member>"}; an Export gives the families
// proper names, labels and help.
type Export struct {
	// Prefix starts every family name of the group: "weir_plugin".
	Prefix string
	// Member is the label naming the member: "plugin", "route".
	Member string
	// Fixed are labels every family of the group carries with one value: {"filter": "cache"}.
	Fixed map[string]string
	// As publishes metrics as values of one family: the cache's "hits" and "misses" are
	// weir_cache_requests_total{result="hit"|"miss"}. The key "*" applies to every name not
	// listed, with the metric's name as the label's value when Value is empty (a split's
	// per-upstream counters are weir_split_requests_total{upstream="…"}).
	As map[string]As
	// Help describes families, by name without Prefix and "_total": "calls".
	Help map[string]string
}

// As names the family a metric is published under and the label that tells it from the
// family's other metrics.
type As struct{ Family, Label, Value string }

// Export sets how group is published at /metrics. Components call it from init.
func (r *Registry) Export(group string, e Export) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exports == nil {
		r.exports = map[string]Export{}
	}
	r.exports[group] = e
}

// registryCollector publishes a Registry at scrape time. It describes nothing up front (an
// unchecked collector): the set of groups and members grows as components register.
type registryCollector struct{ r *Registry }

func (registryCollector) Describe(chan<- *prometheus.Desc) {}

// sample is one registry metric on its way to a family.
type sample struct {
	family, help string
	name         string // in the registry, to order samples that meet in one series
	kind         Kind
	labels       []string // names, sorted
	values       []string
	v            int64
}

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	var samples []sample
	c.r.mu.Lock()
	for k, m := range c.r.metrics {
		samples = append(samples, c.r.sampleLocked(k, m))
	}
	c.r.mu.Unlock()
	// One family must have one type, help and label set, and one series per label values; the
	// first (in a stable order) wins over a later one that would break that, such as a plugin's
	// own metric whose sanitised name meets another.
	slices.SortFunc(samples, func(a, b sample) int {
		return cmp.Or(strings.Compare(a.family, b.family), slices.Compare(a.values, b.values), strings.Compare(a.name, b.name))
	})
	var desc *prometheus.Desc
	var first *sample
	for i := range samples {
		s := &samples[i]
		if first == nil || s.family != first.family {
			first = s
			desc = prometheus.NewDesc(s.family, s.help, s.labels, nil)
		} else if s.kind != first.kind || !slices.Equal(s.labels, first.labels) || slices.Equal(s.values, samples[i-1].values) {
			continue
		}
		vt := prometheus.CounterValue
		if s.kind == GaugeKind {
			vt = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(desc, vt, float64(s.v), s.values...)
	}
}

// sampleLocked maps one registry metric to its family, labels and value.
func (r *Registry) sampleLocked(k key, m *Metric) sample {
	e, ok := r.exports[k.group]
	if !ok {
		e = Export{Prefix: "weir_" + k.group, Member: "name"}
	}
	family, name := k.name, k.name
	labels := map[string]string{e.Member: k.member}
	for l, v := range e.Fixed {
		labels[l] = v
	}
	as, ok := e.As[k.name]
	if !ok {
		as, ok = e.As["*"]
	}
	if ok {
		family = as.Family
		v := as.Value
		if v == "" {
			v = k.name
		}
		labels[as.Label] = v
	}
	fam := e.Prefix + "_" + sanitize(family)
	if m.kind == CounterKind {
		fam += "_total"
	}
	help := e.Help[family]
	if help == "" {
		help = k.group + " " + name + " (from the gateway's telemetry registry)."
	}
	s := sample{family: fam, help: help, name: name, kind: m.kind, v: m.Load()}
	for _, l := range slices.Sorted(maps.Keys(labels)) {
		s.labels = append(s.labels, l)
		s.values = append(s.values, labels[l])
	}
	return s
}

// sanitize makes s a valid piece of a metric name: letters, digits and underscores.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
