package admin

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
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
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Shutdown(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := New(eng, Options{Token: token}, zerolog.Nop())
	go a.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = a.Shutdown() })
	return "http://" + ln.Addr().String(), path
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
		{"GET", "/healthz", "", 401, "bearer token"},
		{"GET", "/healthz", "wrong", 401, "bearer token"},
		{"GET", "/healthz", "tok", 200, `"status": "ok"`},
		{"GET", "/routes", "tok", 200, `"name": "hello"`},
		{"GET", "/config", "tok", 200, `"[redacted]"`},
		{"POST", "/reload", "tok", 200, `"unchanged": true`},
		{"GET", "/reloads", "tok", 200, `"trigger": "admin"`},
		{"GET", "/reload", "tok", 405, "use POST"},
		{"GET", "/nope", "tok", 404, "no such admin endpoint"},
		{"GET", "/debug/pprof/", "tok", 200, "goroutine"},
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
