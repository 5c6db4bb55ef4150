package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func TestRouteMetricsRecord(t *testing.T) {
	m := Route("t-record")
	if Route("t-record") != m {
		t.Fatal("a second Route call returned other metrics")
	}
	reqs := []struct {
		method string
		status int
		in     int
	}{
		{"GET", 200, 0}, {"GET", 204, 0}, {"POST", 201, 10}, {"BREW", 404, 0}, {"get", 500, 0}, {"DELETE", 503, 5},
		{"GET", 0, 0}, {"GET", 999, 0}, // never sent by the server; counted with the nearest class
	}
	for _, r := range reqs {
		m.Record([]byte(r.method), r.status, 3*time.Millisecond, r.in, 100)
	}
	counts := []struct {
		method, code string
		want         float64
	}{
		{"GET", "2xx", 2}, {"POST", "2xx", 1}, {"OTHER", "4xx", 1}, {"OTHER", "5xx", 1}, {"DELETE", "5xx", 1},
		{"GET", "1xx", 1}, {"GET", "5xx", 1}, {"GET", "4xx", 0},
	}
	for _, c := range counts {
		if got := testutil.ToFloat64(requestsTotal.WithLabelValues("t-record", c.method, c.code)); got != c.want {
			t.Errorf("requests{%s,%s} = %v, want %v", c.method, c.code, got, c.want)
		}
	}
	if got := testutil.ToFloat64(requestBytes.WithLabelValues("t-record")); got != 15 {
		t.Errorf("request bytes = %v, want 15", got)
	}
	if got := testutil.ToFloat64(responseBytes.WithLabelValues("t-record")); got != 800 {
		t.Errorf("response bytes = %v, want 800", got)
	}
	h := requestDuration.WithLabelValues("t-record").(prometheus.Histogram)
	if got := histogramCount(t, h); got != uint64(len(reqs)) {
		t.Errorf("duration count = %d, want %d", got, len(reqs))
	}
}

func histogramCount(t *testing.T, c prometheus.Collector) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var pb dto.Metric
	if err := (<-ch).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}

// TestRecordAllocatesNothing: Record runs for every request.
func TestRecordAllocatesNothing(t *testing.T) {
	m := Route("t-allocs")
	get := []byte("GET")
	m.Record(get, 200, time.Millisecond, 1, 1) // creates the GET 2xx counter
	if n := testing.AllocsPerRun(1000, func() { m.Record(get, 200, time.Millisecond, 1, 1) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	m := Route("t-bench")
	get := []byte("GET")
	b.ReportAllocs()
	for b.Loop() {
		m.Record(get, 200, 1500*time.Microsecond, 0, 512)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	m := Route("t-bench-parallel")
	get := []byte("GET")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Record(get, 200, 1500*time.Microsecond, 0, 512)
		}
	})
}

func TestConfigMetrics(t *testing.T) {
	ok0 := testutil.ToFloat64(configReloads.WithLabelValues("ok"))
	failed0 := testutil.ToFloat64(configReloads.WithLabelValues("failed"))
	ConfigApplied("aaa", false)
	ConfigApplied("bbb", true)
	ConfigUnchanged()
	ConfigFailed()
	if got := testutil.ToFloat64(configReloads.WithLabelValues("ok")) - ok0; got != 2 {
		t.Errorf("ok reloads = %v, want 2", got)
	}
	if got := testutil.ToFloat64(configReloads.WithLabelValues("failed")) - failed0; got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
	want := `# HELP weir_config_info 1 for the hash of the running config.
# TYPE weir_config_info gauge
weir_config_info{hash="bbb"} 1
`
	if err := testutil.CollectAndCompare(configInfo, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if ts := testutil.ToFloat64(configLastSuccess); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last success timestamp %v is not now", ts)
	}
}

func TestRegistryExport(t *testing.T) {
	r := NewRegistry()
	r.Export("cache", Export{
		Prefix: "weir_cache", Member: "route", Fixed: map[string]string{"filter": "cache"},
		As:   map[string]As{"hits": {"requests", "result", "hit"}, "misses": {"requests", "result", "miss"}},
		Help: map[string]string{"requests": "Cache answers by result.", "bytes": "Stored bytes."},
	})
	r.Export("split", Export{Prefix: "weir_split", Member: "route", As: map[string]As{"*": {Family: "requests", Label: "upstream"}},
		Help: map[string]string{"requests": "Requests sent to each side."}})
	r.Counter("cache", "api", "hits").Add(3)
	r.Counter("cache", "api", "misses").Add(1)
	r.Gauge("cache", "api", "bytes").Add(4096)
	r.Counter("split", "api", "blue").Add(9)
	r.Counter("split", "api", "green").Add(1)
	r.Counter("odd", "x y", "x.y-z").Add(2) // no Export: default naming, sanitised
	// A plugin's metric whose sanitised name meets another: the first wins, no broken scrape.
	r.Counter("odd", "x y", "x_y-z").Add(5)
	r.Gauge("odd", "z", "x.y.z").Add(1)

	want := `# HELP weir_cache_bytes Stored bytes.
# TYPE weir_cache_bytes gauge
weir_cache_bytes{filter="cache",route="api"} 4096
# HELP weir_cache_requests_total Cache answers by result.
# TYPE weir_cache_requests_total counter
weir_cache_requests_total{filter="cache",result="hit",route="api"} 3
weir_cache_requests_total{filter="cache",result="miss",route="api"} 1
# HELP weir_odd_x_y_z_total odd x.y-z (from the gateway's telemetry registry).
# TYPE weir_odd_x_y_z_total counter
weir_odd_x_y_z_total{name="x y"} 2
# HELP weir_split_requests_total Requests sent to each side.
# TYPE weir_split_requests_total counter
weir_split_requests_total{route="api",upstream="blue"} 9
weir_split_requests_total{route="api",upstream="green"} 1
`
	c := registryCollector{r}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"weir_cache_bytes", "weir_cache_requests_total", "weir_odd_x_y_z_total", "weir_split_requests_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestPromLint: every family the gateway registers passes the Prometheus linter.
func TestPromLint(t *testing.T) {
	Route("t-lint").Record([]byte("GET"), 200, time.Millisecond, 1, 1)
	SetBuildInfo("test")
	problems, err := testutil.GatherAndLint(Prom)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
