package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Counter is one series of a Prometheus counter family, resolved when a component is built, so
// counting is one atomic add. Components hold it by value; the zero Counter counts nothing.
type Counter struct{ c prometheus.Counter }

// Inc adds one.
func (c Counter) Inc() {
	if c.c != nil {
		c.c.Inc()
	}
}

// Histogram is one series of a Prometheus histogram of durations, resolved at build;
// observing is a few atomic adds. The zero Histogram records nothing.
type Histogram struct{ o prometheus.Observer }

// Observe records d.
func (h Histogram) Observe(d time.Duration) {
	if h.o != nil {
		h.o.Observe(d.Seconds())
	}
}

var (
	upstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weir_upstream_duration_seconds",
		Help:    "Time from sending a request to an upstream target to its response header (a small body included), per attempt.",
		Buckets: durationBuckets,
	}, []string{"upstream"})
	upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_upstream_requests_total",
		Help: `Attempts sent to an upstream, by the class of its answer, or "error" when none came (refused, reset, timed out).`,
	}, []string{"upstream", "code"})
	upstreamRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_upstream_retries_total",
		Help: "Attempts that retried a failed one.",
	}, []string{"upstream"})
	upstreamEjections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_upstream_ejections_total",
		Help: "Times outlier detection took a target out of rotation.",
	}, []string{"upstream", "target"})

	pluginDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "weir_plugin_call_duration_seconds",
		Help: "Duration of guest calls, by plugin; one call in PluginTimingSample is timed, so the count is a sample of weir_plugin_calls_total.",
		// Guest calls take microseconds; the request buckets would put them all in the first.
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"plugin"})

	ratelimitDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_ratelimit_decisions_total",
		Help: "Rate-limit verdicts by route, filter and decision: allowed, limited, or error (the limiter's store failed; the fail policy decided).",
	}, []string{"route", "filter", "decision"})
	authDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_auth_decisions_total",
		Help: "Verdicts of access-control filters (jwt, apikey, basicauth, extauth, acl, ipfilter) by route, filter and result: allowed or denied.",
	}, []string{"route", "filter", "result"})
)

func init() {
	Prom.MustRegister(upstreamDuration, upstreamRequests, upstreamRetries, upstreamEjections,
		pluginDuration, ratelimitDecisions, authDecisions)
}

// UpstreamMetrics are one upstream's per-attempt metrics, resolved when an upstream is built.
type UpstreamMetrics struct {
	duration Histogram
	codes    [len(classLabels)]Counter
	errors   Counter
	retries  Counter
}

var (
	upstreamsMu sync.Mutex
	upstreams   = map[string]*UpstreamMetrics{}
)

// Upstream returns the metrics of the upstream name; every build gets the same ones.
func Upstream(name string) *UpstreamMetrics {
	upstreamsMu.Lock()
	defer upstreamsMu.Unlock()
	if m := upstreams[name]; m != nil {
		return m
	}
	m := &UpstreamMetrics{
		duration: Histogram{upstreamDuration.WithLabelValues(name)},
		errors:   Counter{upstreamRequests.WithLabelValues(name, "error")},
		retries:  Counter{upstreamRetries.WithLabelValues(name)},
	}
	for i, l := range classLabels {
		m.codes[i] = Counter{upstreamRequests.WithLabelValues(name, l)}
	}
	upstreams[name] = m
	return m
}

// Attempt records one attempt: the upstream's status, or 0 when no answer came, and how long
// the answer took (not observed when none came: a refused connection is not a fast answer).
func (m *UpstreamMetrics) Attempt(status int, d time.Duration) {
	if status == 0 {
		m.errors.Inc()
		return
	}
	m.codes[classIndex(status)].Inc()
	m.duration.Observe(d)
}

// Retry records an attempt that retries a failed one.
func (m *UpstreamMetrics) Retry() { m.retries.Inc() }

// UpstreamEjected records that outlier detection ejected target of upstream. Ejections are rare,
// so the series is looked up each time.
func UpstreamEjected(upstream, target string) {
	upstreamEjections.WithLabelValues(upstream, target).Inc()
}

// PluginTimingSample is how many guest calls of an instance pass for one that is timed: a
// clock read costs a good part of what a small guest call does, and a sample gives the same
// quantiles.
const PluginTimingSample = 8

// PluginCallDuration returns the call-duration histogram of plugin, for its module to keep.
func PluginCallDuration(plugin string) Histogram {
	return Histogram{pluginDuration.WithLabelValues(plugin)}
}

// RateLimitDecision returns the counter of one decision ("allowed", "limited", "error") of the
// rate-limit filter configured as filter on route, for the filter to keep.
func RateLimitDecision(route, filter, decision string) Counter {
	return Counter{ratelimitDecisions.WithLabelValues(route, filter, decision)}
}

// AuthDecisions count an access-control filter's verdicts in weir_auth_decisions_total. A
// filter resolves them when it is built and counts each request with Count.
type AuthDecisions struct{ allowed, denied Counter }

// NewAuthDecisions returns the verdict counters of the filter configured as filter on route.
func NewAuthDecisions(route, filter string) AuthDecisions {
	return AuthDecisions{
		allowed: Counter{authDecisions.WithLabelValues(route, filter, "allowed")},
		denied:  Counter{authDecisions.WithLabelValues(route, filter, "denied")},
	}
}

// Count records a verdict: allowed when the request goes on, denied when the filter answered it.
func (d AuthDecisions) Count(allowed bool) {
	if allowed {
		d.allowed.Inc()
	} else {
		d.denied.Inc()
	}
}
