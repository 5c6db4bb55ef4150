package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weir-gateway/weir/core/telemetry"
)

// livePools are the pools not yet closed. The state the balancers already keep per target
// (in-flight requests, health) is read from them at scrape time, so publishing it costs a
// request nothing.
var livePools = poolSet{set: map[*Pool]struct{}{}}

type poolSet struct {
	mu  sync.Mutex
	set map[*Pool]struct{}
}

func (s *poolSet) add(p *Pool) {
	s.mu.Lock()
	s.set[p] = struct{}{}
	s.mu.Unlock()
}

func (s *poolSet) remove(p *Pool) {
	s.mu.Lock()
	delete(s.set, p)
	s.mu.Unlock()
}

func (s *poolSet) list() []*Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Pool, 0, len(s.set))
	for p := range s.set {
		out = append(out, p)
	}
	return out
}

var (
	inFlightDesc = prometheus.NewDesc("weir_upstream_in_flight",
		"Requests an upstream's targets are serving now.", []string{"upstream"}, nil)
	healthyDesc = prometheus.NewDesc("weir_upstream_target_healthy",
		"1 when a target is in rotation, 0 when active checks marked it unhealthy or outlier detection ejected it.",
		[]string{"upstream", "target"}, nil)
	connsDesc = prometheus.NewDesc("weir_upstream_connections",
		"Open connections to a target: busy, idle in the pool, or being dialled (at most the upstream's max_conns).",
		[]string{"upstream", "target"}, nil)
	idleConnsDesc = prometheus.NewDesc("weir_upstream_idle_connections",
		"Connections to a target idle in the pool; closed after the upstream's idle_timeout unused.",
		[]string{"upstream", "target"}, nil)
)

func init() { telemetry.Prom.MustRegister(poolCollector{}) }

type poolCollector struct{}

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- inFlightDesc
	ch <- healthyDesc
	ch <- connsDesc
	ch <- idleConnsDesc
}

// Collect publishes every live pool. Two pools of one upstream live at once while a reload that
// changed its transport settings drains the old one (and in tests that run several gateways):
// their in-flight requests and connections add up, and a target counts as healthy when either
// pool has it so.
func (poolCollector) Collect(ch chan<- prometheus.Metric) {
	inFlight := map[string]int64{}
	healthy := map[[2]string]bool{}
	conns := map[[2]string][2]int{} // open, idle
	for _, p := range livePools.list() {
		n := inFlight[p.name]
		for _, t := range p.Status() {
			n += t.InFlight
			k := [2]string{p.name, t.Address}
			healthy[k] = healthy[k] || t.State == "healthy"
			c := conns[k]
			conns[k] = [2]int{c[0] + t.Connections, c[1] + t.IdleConnections}
		}
		inFlight[p.name] = n
	}
	for name, n := range inFlight {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(n), name)
	}
	for k, ok := range healthy {
		v := 0.0
		if ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, v, k[0], k[1])
	}
	for k, c := range conns {
		ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(c[0]), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(idleConnsDesc, prometheus.GaugeValue, float64(c[1]), k[0], k[1])
	}
}
