package cache

import (
	"strings"

	"github.com/weir-gateway/weir/core/telemetry"
)

// MetricsGroup is the telemetry group of the cache's metrics; members are route names.
const MetricsGroup = "cache"

// counters are a route's cache counters, resolved once when the filter is built.
type counters struct {
	hits, misses, stored, revalidated, stale, coalesced, bypass, tooLarge *telemetry.Metric
	refreshFailed                                                         *telemetry.Metric
}

func newCounters(route string) *counters {
	c := func(n string) *telemetry.Metric { return telemetry.Metrics.Counter(MetricsGroup, route, n) }
	return &counters{hits: c("hits"), misses: c("misses"), stored: c("stored"), revalidated: c("revalidated"),
		stale: c("stale"), coalesced: c("coalesced"), bypass: c("bypass"), tooLarge: c("too_large"),
		refreshFailed: c("refresh_failed")}
}

// count records an answer by its Cache-Status.
func (m *counters) count(status string) {
	switch status {
	case csHit:
		m.hits.Add(1)
	case csCollapsed:
		m.hits.Add(1)
		m.coalesced.Add(1)
	case csStaleSWR, csSIE:
		m.stale.Add(1)
	case csRevalid:
		m.revalidated.Add(1)
	case csBypass, csOnlyCached:
		m.bypass.Add(1)
	case csTooLarge:
		m.misses.Add(1)
		m.tooLarge.Add(1)
	default:
		m.misses.Add(1)
		if strings.HasSuffix(status, "; stored") {
			m.stored.Add(1)
		}
	}
}
