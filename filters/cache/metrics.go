package cache

import (
	"strings"

	"github.com/weir-gateway/weir/core/telemetry"
)

// MetricsGroup is the telemetry group of the cache's metrics; members are route names.
const MetricsGroup = "cache"

// At /metrics every answer counts once in weir_cache_requests_total by its result; the other
// counters say more about some of those answers (see README.md, Metrics).
func init() {
	result := func(v string) telemetry.As { return telemetry.As{Family: "requests", Label: "result", Value: v} }
	telemetry.Metrics.Export(MetricsGroup, telemetry.Export{
		Prefix: "weir_cache", Member: "route", Fixed: map[string]string{"filter": Name},
		As: map[string]telemetry.As{"hits": result("hit"), "misses": result("miss"), "stale": result("stale"),
			"revalidated": result("revalidated"), "bypass": result("bypass")},
		Help: map[string]string{
			"requests":       "Requests the cache answered or forwarded, by result: hit, miss, stale, revalidated, bypass.",
			"coalesced":      "Hits served from an entry another request fetched while this one waited.",
			"stored":         "Responses stored.",
			"too_large":      "Responses over max_body_bytes, passed through (counted as misses too).",
			"refresh_failed": "Background revalidations that got no usable answer.",
			"bytes":          "What the stored entries cost against max_bytes.",
			"entries":        "Stored entries.",
		},
	})
}

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
