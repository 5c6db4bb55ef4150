package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry/promtest"
)

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
	// Series are kept for the process (other tests, -count): compare before and after.
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"weir_requests_total", []string{"route", "m-api", "method", "GET", "code", "2xx"}, 3},
		{"weir_requests_total", []string{"route", "m-api", "method", "POST", "code", "2xx"}, 1},
		{"weir_requests_total", []string{"route", "m-api", "method", "OTHER", "code", "2xx"}, 1},
		{"weir_requests_total", []string{"route", "m-api", "method", "GET", "code", "5xx"}, 0},
		{"weir_requests_total", []string{"route", "m-local", "method", "GET", "code", "5xx"}, 2},
		{"weir_requests_total", []string{"route", "(none)", "method", "GET", "code", "4xx"}, 2}, // the 404 and the framing rejection
		{"weir_requests_total", []string{"route", "(none)", "method", "OTHER", "code", "4xx"}, 1},
		{"weir_request_duration_seconds", []string{"route", "m-api"}, 5},
		{"weir_request_duration_seconds", []string{"route", "m-local"}, 2},
		{"weir_request_bytes_total", []string{"route", "m-api"}, 5},
		{"weir_response_bytes_total", []string{"route", "m-api"}, 4 * 5}, // the backend echoes the 4-byte path
		{"weir_response_bytes_total", []string{"route", "m-local"}, 8},
	}
	before := make([]float64, len(checks))
	for i, tt := range checks {
		before[i] = promtest.Value(t, tt.name, tt.labels...)
	}
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

	for i, tt := range checks {
		if got := promtest.Value(t, tt.name, tt.labels...) - before[i]; got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestConfigReloadMetrics: reloads are counted by result and weir_config_info follows the
// running hash.
func TestConfigReloadMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeConfig(t, path, "127.0.0.1:1", "1s", "a")
	e, _ := start(t, path)
	ok0, failed0 := promtest.Value(t, "weir_config_reloads_total", "result", "ok"), promtest.Value(t, "weir_config_reloads_total", "result", "failed")
	first := e.Config().Hash
	if got := promtest.Value(t, "weir_config_info", "hash", first); got != 1 {
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
		if got := promtest.Value(t, tt.name, tt.label, tt.value); got != tt.want {
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

// TestUpstreamMetrics: attempts are counted by the class of the answer or as errors, retries
// apart, and the targets' health and in-flight requests are read at scrape time.
func TestUpstreamMetrics(t *testing.T) {
	be := backend(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams:
  m-up: { targets: [%q] }
  # Nothing listens on port 1: each attempt fails to connect and is retried once.
  m-dead: { targets: ["127.0.0.1:1"], retries: { attempts: 1, backoff: 1ms } }
  # One failed connect ejects the dead target; the retry goes to the live one.
  m-eject:
    targets: ["127.0.0.1:1", %q]
    retries: { attempts: 1, backoff: 1ms }
    outlier: { consecutive_connect_failures: 1 }
routes:
  - { name: m-up, match: { path_prefix: /up/ }, upstream: m-up }
  - { name: m-dead, match: { path_prefix: /dead/ }, upstream: m-dead }
  - { name: m-eject, match: { path_prefix: /eject/ }, upstream: m-eject }
`, be, be))
	checks := []struct {
		name   string
		labels []string
		want   float64 // added by this test's traffic, or the value of a gauge
		gauge  bool
	}{
		{"weir_upstream_ejections_total", []string{"upstream", "m-eject", "target", "127.0.0.1:1"}, 1, false},
		{"weir_upstream_target_healthy", []string{"upstream", "m-eject", "target", "127.0.0.1:1"}, 0, true},
		{"weir_upstream_target_healthy", []string{"upstream", "m-eject", "target", be}, 1, true},
		{"weir_upstream_requests_total", []string{"upstream", "m-up", "code", "2xx"}, 3, false},
		{"weir_upstream_requests_total", []string{"upstream", "m-up", "code", "error"}, 0, false},
		{"weir_upstream_duration_seconds", []string{"upstream", "m-up"}, 3, false},
		{"weir_upstream_retries_total", []string{"upstream", "m-up"}, 0, false},
		{"weir_upstream_requests_total", []string{"upstream", "m-dead", "code", "error"}, 4, false},
		{"weir_upstream_duration_seconds", []string{"upstream", "m-dead"}, 0, false}, // no answer, no latency
		{"weir_upstream_retries_total", []string{"upstream", "m-dead"}, 2, false},
		{"weir_upstream_in_flight", []string{"upstream", "m-up"}, 0, true},
		{"weir_upstream_target_healthy", []string{"upstream", "m-up", "target", be}, 1, true},
		{"weir_requests_total", []string{"route", "m-dead", "code", "5xx"}, 2, false},
	}
	before := make([]float64, len(checks))
	for i, tt := range checks {
		if !tt.gauge {
			before[i] = promtest.Value(t, tt.name, tt.labels...)
		}
	}
	ejected := func() float64 { return promtest.Value(t, "weir_upstream_ejections_total", "upstream", "m-eject") }
	ejected0 := ejected()

	_, addr := start(t, path)
	c := &fasthttp.Client{}
	for range 3 {
		if status, _, _, err := get(c, "http://"+addr+"/up/x"); err != nil || status != 200 {
			t.Fatalf("/up/x: %d %v", status, err)
		}
	}
	for range 2 {
		if status, _, _, err := get(c, "http://"+addr+"/dead/x"); err != nil || status != 502 {
			t.Fatalf("/dead/x: %d %v, want 502", status, err)
		}
	}
	// The balancer picks the dead target sooner or later; once ejected it is not picked again.
	for i := 0; i < 100 && ejected() == ejected0; i++ {
		if status, _, _, err := get(c, "http://"+addr+"/eject/x"); err != nil || status != 200 {
			t.Fatalf("/eject/x: %d %v", status, err)
		}
	}
	for i, tt := range checks {
		if got := promtest.Value(t, tt.name, tt.labels...) - before[i]; got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}
