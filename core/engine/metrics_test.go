package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	dto "github.com/prometheus/client_model/go"

	"github.com/weir-gateway/weir/core/telemetry"
)

// promValue reads one series from the gateway's Prometheus registry: a counter's or gauge's
// value, or a histogram's sample count; 0 when the series does not exist.
func promValue(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	fams, err := telemetry.Prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestRequestMetrics drives known traffic through a running gateway and checks the request
// families count exactly it.
func TestRequestMetrics(t *testing.T) {
	be := backend(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes:
  - { name: m-api, match: { path_prefix: /m/ }, upstream: be }
  - { name: m-local, match: { path: /local }, upstream: be, filters: [ { respond: { status: 503, body: "down" } } ] }
`, be))
	// The no-route series is shared with every other test of the package: compare before/after.
	none404 := promValue(t, "weir_requests_total", "route", "(none)", "method", "GET", "code", "4xx")
	noneOther := promValue(t, "weir_requests_total", "route", "(none)", "method", "OTHER", "code", "4xx")
	_, addr := start(t, path)

	c := &fasthttp.Client{}
	do := func(method, uri, body string) int {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://" + addr + uri)
		if body != "" {
			req.SetBodyString(body)
		}
		if err := c.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode()
	}
	for range 3 {
		do("GET", "/m/a", "")
	}
	do("POST", "/m/b", "hello")
	do("BREW", "/m/c", "") // an invented method: counted as OTHER
	do("GET", "/local", "")
	do("GET", "/local", "")
	do("GET", "/nothing", "")
	do("FOO", "/nothing", "")
	// Ambiguous framing is refused by the edge before routing.
	if head := rawHead(t, addr, "GET /m/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"); !strings.HasPrefix(head, "HTTP/1.1 400") {
		t.Fatalf("framing: %q", head)
	}

	counts := []struct {
		route, method, code string
		want                float64
	}{
		{"m-api", "GET", "2xx", 3},
		{"m-api", "POST", "2xx", 1},
		{"m-api", "OTHER", "2xx", 1},
		{"m-api", "GET", "5xx", 0},
		{"m-local", "GET", "5xx", 2},
		{"(none)", "GET", "4xx", none404 + 1 + 1}, // the 404 and the framing rejection
		{"(none)", "OTHER", "4xx", noneOther + 1},
	}
	for _, tt := range counts {
		if got := promValue(t, "weir_requests_total", "route", tt.route, "method", tt.method, "code", tt.code); got != tt.want {
			t.Errorf("weir_requests_total{route=%q,method=%q,code=%q} = %v, want %v", tt.route, tt.method, tt.code, got, tt.want)
		}
	}
	others := []struct {
		name, route string
		want        float64
	}{
		{"weir_request_duration_seconds", "m-api", 5},
		{"weir_request_duration_seconds", "m-local", 2},
		{"weir_request_bytes_total", "m-api", 5},
		{"weir_response_bytes_total", "m-api", 4 * 5}, // the backend echoes the 4-byte path
		{"weir_response_bytes_total", "m-local", 8},
	}
	for _, tt := range others {
		if got := promValue(t, tt.name, "route", tt.route); got != tt.want {
			t.Errorf("%s{route=%q} = %v, want %v", tt.name, tt.route, got, tt.want)
		}
	}
}

// TestConfigReloadMetrics: reloads are counted by result and weir_config_info follows the
// running hash.
func TestConfigReloadMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeConfig(t, path, "127.0.0.1:1", "1s", "a")
	e, _ := start(t, path)
	ok0, failed0 := promValue(t, "weir_config_reloads_total", "result", "ok"), promValue(t, "weir_config_reloads_total", "result", "failed")
	first := e.Config().Hash
	if got := promValue(t, "weir_config_info", "hash", first); got != 1 {
		t.Fatalf("weir_config_info{hash=first} = %v, want 1", got)
	}
	writeConfig(t, path, "127.0.0.1:1", "1s", "b")
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "routes: [ { name: x } ]")
	if _, err := e.Reload("test"); err == nil {
		t.Fatal("a broken config reloaded")
	}
	second := e.Config().Hash
	checks := []struct {
		name, label, value string
		want               float64
	}{
		{"weir_config_reloads_total", "result", "ok", ok0 + 1},
		{"weir_config_reloads_total", "result", "failed", failed0 + 1},
		{"weir_config_info", "hash", first, 0},
		{"weir_config_info", "hash", second, 1},
	}
	for _, tt := range checks {
		if got := promValue(t, tt.name, tt.label, tt.value); got != tt.want {
			t.Errorf("%s{%s=%q} = %v, want %v", tt.name, tt.label, tt.value, got, tt.want)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
