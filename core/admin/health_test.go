package admin

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/core/engine"
)

// serveEngine serves eng's proxy listener on a loopback port and waits until it says it is
// ready (Serve runs in a goroutine). The engine's cleanup shuts it down.
func serveEngine(t *testing.T, eng *engine.Engine) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go eng.Serve(ln) //nolint:errcheck // ends with Shutdown
	for deadline := time.Now().Add(5 * time.Second); eng.Ready() != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("engine not ready: %v", eng.Ready())
		}
	}
}

// TestProbesNeedNoToken: liveness and readiness answer without the token (and with any), and
// readiness follows the engine: not ready before its listener serves and from the start of a
// shutdown.
func TestProbesNeedNoToken(t *testing.T) {
	eng, addr, path, _ := startEngineAdmin(t, plainCfg, Options{Token: "tok"})
	base := "http://" + addr

	probe := func(stage, p string, wantStatus int, wantBody string) {
		t.Helper()
		for _, token := range []string{"", "wrong", "tok"} {
			status, body := do(t, "GET", base+p, token)
			if status != wantStatus || !strings.Contains(body, wantBody) {
				t.Errorf("%s: GET %s (token %q) = %d %s, want %d with %q", stage, p, token, status, body, wantStatus, wantBody)
			}
		}
	}
	probe("before serving", "/healthz", 200, `"status": "ok"`)
	probe("before serving", "/readyz", 503, `"reason": "no listener serving yet"`)

	serveEngine(t, eng)
	probe("serving", "/healthz", 200, `"status": "ok"`)
	probe("serving", "/readyz", 200, `"status": "ready"`)
	// A rejected reload keeps the running config serving: still ready.
	if err := os.WriteFile(path, []byte("routes: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if status, _ := do(t, "POST", base+"/reload", "tok"); status != 422 {
		t.Fatalf("bad reload = %d, want 422", status)
	}
	probe("after a rejected reload", "/readyz", 200, `"status": "ready"`)
	// The probes say nothing about the config.
	if _, body := do(t, "GET", base+"/healthz", ""); strings.Contains(body, eng.Config().Hash) {
		t.Errorf("/healthz shows the config hash to anyone: %s", body)
	}

	if err := eng.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	probe("shut down", "/healthz", 200, `"status": "ok"`)
	probe("shut down", "/readyz", 503, `"reason": "shutting down"`)
}

// TestOnlyProbesArePublic: with a token set, every other endpoint refuses a request without
// it, and no spelling of a path (dot segments, encoded slashes, repeated slashes, case, a
// query, an absolute target) reaches anything but the probes without the token.
func TestOnlyProbesArePublic(t *testing.T) {
	addr, _, _ := startAdmin(t, plainCfg, Options{Token: "tok", Pprof: true})
	a := New(nil, Options{Pprof: true}, zerolog.Nop())
	for path, ep := range a.endpoints {
		if public[path] {
			continue
		}
		req := ep.method + " " + path + " HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nContent-Length: 0\nConnection: close\n\n"
		if status, body := raw(t, addr, req); status != 401 {
			t.Errorf("%s %s without token = %d %.80s, want 401", ep.method, path, status, body)
		}
	}
	const healthz, readyz = "{\n  \"status\": \"ok\"\n}\n", "{\n  \"status\": \"ready\"\n}\n"
	for _, target := range []string{
		"/healthz/../config", "/readyz/../config", "/healthz/..%2fconfig", "/healthz%2f..%2fconfig",
		"//config", "///config", "/./config", "/healthz/./../config", "/healthz/../../config",
		"/HEALTHZ", "/Healthz", "/READYZ", "/healthz/", "/healthz/x", "/healthz;/config",
		"/healthz%00", "/healthz%2e", "/readyz%2f..", "/readyz%2f..%2f", "/readyz%2F..%2Fconfig",
		"/healthz?x", "/healthz?/../config", "/healthz#/../config", "/%2e%2e/config",
		"/debug/pprof/", "/debug/pprof/goroutine", "/healthz/../debug/pprof/goroutine",
		"http://127.0.0.1/healthz/../config", "http://127.0.0.1//config", "*", "",
		"/", "/?x", "/openapi.json", "/nope", "/metrics", "/console/../config", "/console/%2e%2e/config",
		"/console/..%2fconfig", "/console%2f..%2fconfig",
	} {
		status, body := raw(t, addr, "GET "+target+" HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n")
		// raw returns the header too.
		probeAnswer := status == 200 && (strings.HasSuffix(body, "\r\n\r\n"+healthz) || strings.HasSuffix(body, "\r\n\r\n"+readyz))
		if status != 401 && status != 400 && !probeAnswer {
			t.Errorf("GET %q without token = %d %.120s, want 401, or a probe's answer", target, status, body)
		}
	}
}

// TestIndexForBrowsers: a browser opening the admin address is sent to the console, token or
// not (it cannot send one when navigating, and the redirect says nothing); every other client
// gets the JSON index, behind the token.
func TestIndexForBrowsers(t *testing.T) {
	addr, _, _ := startAdmin(t, plainCfg, Options{Token: "tok"})
	tests := []struct {
		accept, token string
		want          int
		wantBody      string
	}{
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "", 303, "Location: /console/"},
		{"text/html", "", 303, "Location: /console/"},
		{"application/json;q=0.5, text/html", "", 303, "Location: /console/"},
		{"*/*", "", 401, "bearer token"},
		{"", "", 401, "bearer token"},
		{"application/json", "", 401, "bearer token"},
		{"text/html;q=0.5, application/json", "", 401, "bearer token"},
		{"text/html;q=0", "", 401, "bearer token"},
		{"text/*;q=0.9, application/json", "", 401, "bearer token"},
		{"*/*", "tok", 200, `"reference": "/openapi.json"`},
		{"text/html;q=0.5, application/json", "tok", 200, `"path": "/console/"`},
	}
	for _, tt := range tests {
		req := "GET / HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n"
		if tt.accept != "" {
			req += "Accept: " + tt.accept + "\n"
		}
		if tt.token != "" {
			req += "Authorization: Bearer " + tt.token + "\n"
		}
		if status, body := raw(t, addr, req+"\n"); status != tt.want || !strings.Contains(body, tt.wantBody) {
			t.Errorf("GET / with Accept %q, token %q = %d %.200s, want %d with %q", tt.accept, tt.token, status, body, tt.want, tt.wantBody)
		}
	}
}
