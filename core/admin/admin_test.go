package admin

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
	_ "github.com/weir-gateway/weir/filters/all"
)

const cfgText = `
server: { admin_token: s3cret-admin }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes:
  - name: hello
    match: { path: /hello }
    upstream: demo
    filters:
      - headers: { request: { set: { X-Api-Key: "hunter2" } } }
`

func setup(t *testing.T, token string) (string, string) {
	t.Helper()
	_, addr, path, _ := startEngineAdmin(t, cfgText, Options{Token: token})
	return "http://" + addr, path
}

func do(t *testing.T, method, url, token string, header ...string) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == "POST" && len(header) == 0 {
		// What curl -H 'Content-Type: application/json' -XPOST sends.
		header = []string{"Content-Type", "application/json"}
	}
	setHeaders(req, header)
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

func TestEndpoints(t *testing.T) {
	base, path := setup(t, "tok")
	tests := []struct {
		method, path, token string
		wantStatus          int
		wantBody            string
	}{
		{"GET", "/healthz", "", 200, `"status": "ok"`},
		{"GET", "/healthz", "tok", 200, `"status": "ok"`},
		{"GET", "/config", "", 401, "bearer token"},
		{"GET", "/config", "wrong", 401, "bearer token"},
		{"GET", "/routes", "tok", 200, `"name": "hello"`},
		{"GET", "/config", "tok", 200, `"[redacted]"`},
		{"POST", "/reload", "tok", 200, `"unchanged": true`},
		{"GET", "/reloads", "tok", 200, `"trigger": "admin"`},
		{"GET", "/reload", "tok", 405, "use POST"},
		{"GET", "/nope", "tok", 404, "no such admin endpoint"},
		// The profiler is off unless server.admin_pprof says otherwise; still behind the token.
		{"GET", "/debug/pprof/", "tok", 404, "no such admin endpoint"},
		{"GET", "/debug/pprof/goroutine", "tok", 404, "no such admin endpoint"},
		{"GET", "/debug/pprof/", "", 401, "bearer token"},
	}
	for _, tt := range tests {
		status, body := do(t, tt.method, base+tt.path, tt.token)
		if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
			t.Errorf("%s %s (token %q) = %d %s, want %d containing %q", tt.method, tt.path, tt.token, status, body, tt.wantStatus, tt.wantBody)
		}
	}
	// Secrets never leave through /config.
	_, body := do(t, "GET", base+"/config", "tok")
	for _, secret := range []string{"s3cret-admin", "hunter2"} {
		if strings.Contains(body, secret) {
			t.Errorf("/config leaks %q:\n%s", secret, body)
		}
	}
	// A rejected reload answers 422 with the error, and history records it.
	if err := os.WriteFile(path, []byte("routes: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	status, body := do(t, "POST", base+"/reload", "tok")
	var ev engine.ReloadEvent
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		t.Fatalf("reload answer is not JSON: %v\n%s", err, body)
	}
	if status != 422 || ev.OK || ev.Error == "" {
		t.Errorf("rejected reload = %d %+v, want 422 with the error", status, ev)
	}
}

// configAnswer is what GET /config answers, decoded only as far as the test looks.
type configAnswer struct {
	Running         map[string]any `json:"running"`
	File            map[string]any `json:"file"`
	FileError       string         `json:"file_error"`
	RestartRequired []string       `json:"restart_required"`
}

func getConfig(t *testing.T, base string) (configAnswer, string) {
	t.Helper()
	status, body := do(t, "GET", base+"/config", "tok")
	var c configAnswer
	if err := json.Unmarshal([]byte(body), &c); status != 200 || err != nil {
		t.Fatalf("GET /config = %d %v\n%s", status, err, body)
	}
	for _, secret := range []string{"s3cret-admin", "hunter2"} {
		if strings.Contains(body, secret) {
			t.Errorf("/config shows %q:\n%s", secret, body)
		}
	}
	return c, body
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	return v
}

// TestConfigRunningAndFile: /config writes durations as in the file, shows the file beside the
// running config when they differ, and names the settings that wait for a restart; a reload
// applies the rest, and the running value of a restart-only setting stays.
func TestConfigRunningAndFile(t *testing.T) {
	base, path := setup(t, "tok")
	c, _ := getConfig(t, base)
	if got := dig(c.Running, "server", "drain_timeout"); got != "30s" {
		t.Errorf("running server.drain_timeout = %v, want \"30s\"", got)
	}
	if got := dig(c.Running, "server", "idle_timeout"); got != "1m0s" {
		t.Errorf("running server.idle_timeout = %v, want \"1m0s\"", got)
	}
	if c.File != nil || c.FileError != "" || c.RestartRequired != nil {
		t.Errorf("file as running: got file %v, file_error %q, restart_required %v; want only running", c.File != nil, c.FileError, c.RestartRequired)
	}

	changed := strings.Replace(cfgText, "server: { admin_token: s3cret-admin }", "server: { admin_token: s3cret-admin, drain_timeout: 9s }", 1)
	changed = strings.Replace(changed, "match: { path: /hello }", "match: { path: /hello2 }\n    timeout: 250ms", 1)
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"before reload", "after reload"} {
		c, _ = getConfig(t, base)
		if got := dig(c.Running, "server", "drain_timeout"); got != "30s" {
			t.Errorf("%s: running server.drain_timeout = %v, want the start value \"30s\"", stage, got)
		}
		if got := dig(c.File, "server", "drain_timeout"); got != "9s" {
			t.Errorf("%s: file server.drain_timeout = %v, want \"9s\"", stage, got)
		}
		if len(c.RestartRequired) != 1 || c.RestartRequired[0] != "server.drain_timeout" {
			t.Errorf("%s: restart_required = %v, want [server.drain_timeout]", stage, c.RestartRequired)
		}
		if route := dig(c.File, "routes").([]any)[0].(map[string]any); route["timeout"] != "250ms" {
			t.Errorf("%s: file route timeout = %v, want \"250ms\"", stage, route["timeout"])
		}
		if status, body := do(t, "POST", base+"/reload", "tok"); status != 200 {
			t.Fatalf("reload = %d %s", status, body)
		}
	}
	route := dig(c.Running, "routes").([]any)[0].(map[string]any)
	if dig(route, "match", "path") != "/hello2" || route["timeout"] != "250ms" {
		t.Errorf("after reload the running route is %v, want the file's", route)
	}

	// A file that cannot be loaded: its error, redacted, beside the running config.
	if err := os.WriteFile(path, []byte("server: { admin_token: s3cret-admin, drain_timeout: soon }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ = getConfig(t, base)
	if c.Running == nil || c.File != nil || !strings.Contains(c.FileError, "drain_timeout") {
		t.Errorf("unloadable file: running %v, file %v, file_error %q; want running and the error", c.Running != nil, c.File != nil, c.FileError)
	}
}
