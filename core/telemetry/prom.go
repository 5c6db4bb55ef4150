package telemetry

import (
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Prom is the process's Prometheus registry, served by the admin API at /metrics. It holds the
// families recorded natively (requests, upstreams, plugins' call durations, filter decisions,
// config reloads, build), the Go and process collectors, and an exporter of every group of
// Metrics (see Export), so a component that counts into Metrics appears there without the
// exporter knowing it.
var Prom = prometheus.NewRegistry()

// Request durations of a gateway run from well under a millisecond (a cache hit, a local reply)
// to the upstream timeouts; the default buckets start at 5ms and would hide the fast half.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_requests_total",
		Help: `Requests answered, by route ("(none)" when no route matched or the edge refused the request), method (standard methods, else OTHER) and status class.`,
	}, []string{"route", "method", "code"})
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "weir_request_duration_seconds",
		Help:    "Time from the gateway receiving a request to handing its response to the server, by route.",
		Buckets: durationBuckets,
	}, []string{"route"})
	requestBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_request_bytes_total",
		Help: "Request body bytes received, by route (declared or buffered length; a streamed chunked body is not counted).",
	}, []string{"route"})
	responseBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_response_bytes_total",
		Help: "Response body bytes sent, by route (a streamed body counts its declared length, 0 when chunked).",
	}, []string{"route"})

	configReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_config_reloads_total",
		Help: `Config reloads by result: "ok" (applied or unchanged) or "failed" (rejected; the running config stays).`,
	}, []string{"result"})
	configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weir_config_info",
		Help: "1 for the hash of the running config.",
	}, []string{"hash"})
	configLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "weir_config_last_reload_success_timestamp_seconds",
		Help: "Unix time the running config was applied (at start or by the last successful reload).",
	})
	buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "weir_build_info",
		Help: "1, labelled with the gateway's version and the Go version it was built with.",
	}, []string{"version", "goversion"})
)

func init() {
	Prom.MustRegister(
		// Besides the defaults, how long runnable goroutines waited for a thread and how long
		// the world stopped for the collector: the two runtime causes of a latency tail.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{
			Matcher: regexp.MustCompile(`^/sched/(latencies|pauses/total/gc):seconds$`),
		})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		requestsTotal, requestDuration, requestBytes, responseBytes,
		configReloads, configInfo, configLastSuccess, buildInfo,
		registryCollector{Metrics},
	)
	// Both results exist from the start, so a rate() over them is defined before any reload.
	configReloads.WithLabelValues("ok")
	configReloads.WithLabelValues("failed")
}

// SetBuildInfo publishes the gateway's version in weir_build_info.
func SetBuildInfo(version string) {
	buildInfo.Reset()
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

var configMu sync.Mutex // orders config publications; a reload is rare
var configHash string

// ConfigApplied records that the config with hash now runs: at start (reload false) or by a
// reload. The series of the hash it replaced is removed, so weir_config_info has one series.
func ConfigApplied(hash string, reload bool) {
	configMu.Lock()
	defer configMu.Unlock()
	if reload {
		configReloads.WithLabelValues("ok").Inc()
	}
	if hash != configHash {
		if configHash != "" {
			configInfo.DeleteLabelValues(configHash)
		}
		configHash = hash
		configInfo.WithLabelValues(hash).Set(1)
	}
	configLastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
}

// ConfigUnchanged records a reload that found the running config unchanged.
func ConfigUnchanged() { configReloads.WithLabelValues("ok").Inc() }

// ConfigFailed records a rejected reload.
func ConfigFailed() { configReloads.WithLabelValues("failed").Inc() }

// NoRoute is the route label of requests no route matched and of those the edge refused.
const NoRoute = "(none)"

// The method label takes the standard methods (RFC 9110 and PATCH) and OTHER, so a client
// inventing methods cannot grow the series.
var methodLabels = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"}

func methodIndex(m []byte) int {
	switch string(m) { // a switch on string(bytes) does not allocate
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "CONNECT":
		return 5
	case "OPTIONS":
		return 6
	case "TRACE":
		return 7
	case "PATCH":
		return 8
	}
	return 9
}

var classLabels = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// classIndex maps a status to its class; a status outside 100–599 (which the server never
// sends) is counted with the nearest class rather than growing the label's values.
func classIndex(status int) int {
	return min(max(status/100, 1), 5) - 1
}

// RouteMetrics are one route's request metrics. They are resolved when a snapshot is built and
// kept in its route, so recording a request is a few atomic adds: no lock, no map lookup and no
// allocation. The request counters by method and class are created on first use, so a route
// exports only the combinations it has seen.
type RouteMetrics struct {
	name     string
	counts   [len(methodLabels)][len(classLabels)]atomic.Pointer[counterRef]
	duration prometheus.Observer
	in, out  prometheus.Counter
}

type counterRef struct{ c prometheus.Counter }

var (
	routesMu sync.Mutex
	routes   = map[string]*RouteMetrics{}
)

// Route returns the metrics of the route name ("" for NoRoute). It is called at snapshot build;
// every snapshot gets the same RouteMetrics for a name, so counters survive reloads.
func Route(name string) *RouteMetrics {
	if name == "" {
		name = NoRoute
	}
	routesMu.Lock()
	defer routesMu.Unlock()
	if m := routes[name]; m != nil {
		return m
	}
	m := &RouteMetrics{
		name:     name,
		duration: requestDuration.WithLabelValues(name),
		in:       requestBytes.WithLabelValues(name),
		out:      responseBytes.WithLabelValues(name),
	}
	routes[name] = m
	return m
}

// Record counts one answered request: its method, status, time in the gateway and body sizes.
func (m *RouteMetrics) Record(method []byte, status int, d time.Duration, in, out int) {
	mi, ci := methodIndex(method), classIndex(status)
	ref := m.counts[mi][ci].Load()
	if ref == nil {
		ref = m.resolve(mi, ci)
	}
	ref.c.Inc()
	m.duration.Observe(d.Seconds())
	if in > 0 {
		m.in.Add(float64(in))
	}
	if out > 0 {
		m.out.Add(float64(out))
	}
}

// resolve creates the counter of a method and class the first time the route sees them. Two
// requests racing here get the same child from the vector, so either store is right.
func (m *RouteMetrics) resolve(mi, ci int) *counterRef {
	ref := &counterRef{requestsTotal.WithLabelValues(m.name, methodLabels[mi], classLabels[ci])}
	m.counts[mi][ci].Store(ref)
	return ref
}
