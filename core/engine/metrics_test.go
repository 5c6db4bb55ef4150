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
	checks := []promCheck{
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
	verify := promDeltas(t, checks)
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

	verify()
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
	checks := []promCheck{
		{"weir_upstream_ejections_total", []string{"upstream", "m-eject", "target", "127.0.0.1:1"}, 1},
		{"weir_upstream_requests_total", []string{"upstream", "m-up", "code", "2xx"}, 3},
		{"weir_upstream_requests_total", []string{"upstream", "m-up", "code", "error"}, 0},
		{"weir_upstream_duration_seconds", []string{"upstream", "m-up"}, 3},
		{"weir_upstream_retries_total", []string{"upstream", "m-up"}, 0},
		{"weir_upstream_requests_total", []string{"upstream", "m-dead", "code", "error"}, 4},
		{"weir_upstream_duration_seconds", []string{"upstream", "m-dead"}, 0}, // no answer, no latency
		{"weir_upstream_retries_total", []string{"upstream", "m-dead"}, 2},
		{"weir_requests_total", []string{"route", "m-dead", "code", "5xx"}, 2},
	}
	verify := promDeltas(t, checks)
	gauges := []promCheck{ // values, not deltas
		{"weir_upstream_target_healthy", []string{"upstream", "m-eject", "target", "127.0.0.1:1"}, 0},
		{"weir_upstream_target_healthy", []string{"upstream", "m-eject", "target", be}, 1},
		{"weir_upstream_in_flight", []string{"upstream", "m-up"}, 0},
		{"weir_upstream_target_healthy", []string{"upstream", "m-up", "target", be}, 1},
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
	verify()
	for _, g := range gauges {
		if got := promtest.Value(t, g.name, g.labels...); got != g.want {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, got, g.want)
		}
	}
}

// TestFilterDecisionMetrics drives requests through rate-limit and access-control filters and
// checks their verdicts are counted exactly, by route and filter.
func TestFilterDecisionMetrics(t *testing.T) {
	be := backend(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
consumers:
  - { name: ann, groups: [admins], credentials: { apikeys: [ { sha256: %q } ] } }
  - { name: ben, groups: [staff], credentials: { apikeys: [ { sha256: %q } ] } }
routes:
  - { name: m-rl, match: { path_prefix: /rl }, upstream: be, filters: [ { ratelimit: { rate: 2, per: 1m } } ] }
  - { name: m-admin, match: { path_prefix: /admin }, upstream: be, filters: [ apikey, { acl: { allow: [admins] } } ] }
  - { name: m-ip, match: { path_prefix: /ip }, upstream: be, filters: [ { ipfilter: { deny: [127.0.0.1] } } ] }
`, be, sha256Hex("ann-key"), sha256Hex("ben-key")))
	checks := []promCheck{
		{"weir_ratelimit_decisions_total", []string{"route", "m-rl", "filter", "ratelimit", "decision", "allowed"}, 2},
		{"weir_ratelimit_decisions_total", []string{"route", "m-rl", "filter", "ratelimit", "decision", "limited"}, 3},
		{"weir_ratelimit_decisions_total", []string{"route", "m-rl", "filter", "ratelimit", "decision", "error"}, 0},
		{"weir_auth_decisions_total", []string{"route", "m-admin", "filter", "apikey", "result", "allowed"}, 2},
		{"weir_auth_decisions_total", []string{"route", "m-admin", "filter", "apikey", "result", "denied"}, 2},
		{"weir_auth_decisions_total", []string{"route", "m-admin", "filter", "acl", "result", "allowed"}, 1},
		{"weir_auth_decisions_total", []string{"route", "m-admin", "filter", "acl", "result", "denied"}, 1},
		{"weir_auth_decisions_total", []string{"route", "m-ip", "filter", "ipfilter", "result", "denied"}, 1},
	}
	verify := promDeltas(t, checks)
	_, addr := start(t, path)
	send := func(uri, key string, want int) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + uri)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		if err := fasthttp.Do(req, resp); err != nil || resp.StatusCode() != want {
			t.Fatalf("%s (key %q): %d %v, want %d", uri, key, resp.StatusCode(), err, want)
		}
	}
	for i := range 5 {
		send("/rl", "", map[bool]int{true: 200, false: 429}[i < 2])
	}
	send("/admin", "ann-key", 200)
	send("/admin", "ben-key", 403) // apikey allows, acl denies
	send("/admin", "", 401)
	send("/admin", "wrong", 401)
	send("/ip", "", 403)

	verify()
}

// promCheck is one series a test expects its traffic to move by want (series are kept for the
// process, so other tests and -count add to them).
type promCheck struct {
	name   string
	labels []string
	want   float64
}

// promDeltas reads checks' series now and returns the function that verifies them later.
func promDeltas(t *testing.T, checks []promCheck) func() {
	t.Helper()
	before := make([]float64, len(checks))
	for i, c := range checks {
		before[i] = promtest.Value(t, c.name, c.labels...)
	}
	return func() {
		t.Helper()
		for i, c := range checks {
			if got := promtest.Value(t, c.name, c.labels...) - before[i]; got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
	}
}
