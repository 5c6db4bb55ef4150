package admin

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry"
)

// scrape GETs /metrics with the given Accept header and returns status, content type and body.
func scrape(t *testing.T, base, token, accept string) (int, string, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(base + "/metrics")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), string(resp.Header.ContentType()), append([]byte(nil), resp.Body()...)
}

// TestMetricsEndpoint scrapes /metrics over HTTP as Prometheus does: behind the admin token, in
// the text format or OpenMetrics as asked, lint-clean, with the telemetry registry's groups.
func TestMetricsEndpoint(t *testing.T) {
	base, _ := setup(t, "tok")
	// A group no exporter knows appears under default names.
	telemetry.Metrics.Counter("metricstest", "a", "calls").Add(3)

	if status, _, _ := scrape(t, base, "", ""); status != fasthttp.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", status)
	}
	formats := []struct {
		accept, wantType, wantEnd string
	}{
		{"", "text/plain; version=0.0.4", ""},
		{"application/openmetrics-text; version=1.0.0", "application/openmetrics-text; version=1.0.0", "# EOF\n"},
	}
	for _, f := range formats {
		status, ctype, body := scrape(t, base, "tok", f.accept)
		if status != 200 || !strings.HasPrefix(ctype, f.wantType) || !bytes.HasSuffix(body, []byte(f.wantEnd)) {
			t.Fatalf("Accept %q: %d %q, want 200 %q ending %q:\n%.500s", f.accept, status, ctype, f.wantType, f.wantEnd, body)
		}
		for _, want := range []string{
			`weir_metricstest_calls_total{name="a"} 3`,
			`weir_config_info{hash="`,
			`weir_config_reloads_total{result="ok"}`,
			"go_goroutines ",
			"process_cpu_seconds_total ",
		} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("Accept %q: no %q in the scrape", f.accept, want)
			}
		}
		if f.accept != "" {
			continue // promlint reads the text format
		}
		problems, err := promlint.New(bytes.NewReader(body)).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		promtool(t, body)
	}
}

// promtool runs Prometheus's own checker over a scrape when it is installed (Debian's
// prometheus package; CI installs it).
func promtool(t *testing.T, body []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed; skipping promtool check metrics")
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
