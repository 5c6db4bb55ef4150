package engine

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const calloutConfig = `
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off" }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s }
  auth: { targets: [%q], timeout: 5s }
plugins:
  decide: { file: callout.wasm, timeout: 1s, memory_mb: 2 }
routes:
  - name: guarded
    match: { path_prefix: /g/ }
    upstream: be
    filters:
      - decide: {}
  - name: plain
    match: { path_prefix: / }
    upstream: be
`

// loopback serves h on a loopback port until cleanup (or stop) and returns its address.
func loopback(t *testing.T, h fasthttp.RequestHandler) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	stop = func() { _ = srv.Shutdown() }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// TestProxyWasmHTTPCallout runs a proxy-wasm filter that decides each request from an HTTP
// callout to the config's upstream "auth" (plugins/proxywasm/testdata/callout.wat), through the
// gateway: the callout goes through the upstream's pool, the request waits for its answer,
// and the answer lets it through (with a header from the callout's response), replaces it,
// or, when the callout fails, fails it.
func TestProxyWasmHTTPCallout(t *testing.T) {
	var allow atomic.Bool
	var checks atomic.Int64
	authAddr, stopAuth := loopback(t, func(rc *fasthttp.RequestCtx) {
		if string(rc.Path()) != "/check" || string(rc.Host()) != "auth.local" {
			rc.Error("unexpected callout "+string(rc.Host())+string(rc.Path()), 400)
			return
		}
		checks.Add(1)
		if allow.Load() {
			rc.Response.Header.Set("X-User", "alice")
			return
		}
		rc.SetStatusCode(401)
		rc.SetBodyString("denied by auth")
	})
	var hits atomic.Int64
	beAddr, _ := loopback(t, func(rc *fasthttp.RequestCtx) {
		hits.Add(1)
		rc.Response.Header.SetBytesV("X-Saw-User", rc.Request.Header.Peek("X-Auth-User"))
		rc.SetBodyString("backend")
	})
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "plugins", "proxywasm", "testdata", "callout.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "callout.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(calloutConfig, beAddr, authAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	base := "http://" + addr

	do := func(path string) (int, string, string) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(base + path)
		req.Header.Set("X-Auth-User", "mallory") // a client's own is not the callout's answer
		if err := (&fasthttp.Client{}).DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode(), string(resp.Body()), string(resp.Header.Peek("X-Saw-User"))
	}

	allow.Store(true)
	for i := 0; i < 3; i++ {
		if st, body, user := do("/g/x"); st != 200 || body != "backend" || user != "alice" {
			t.Fatalf("allowed: %d %q user %q, want 200 backend with alice", st, body, user)
		}
	}
	allow.Store(false)
	before := hits.Load()
	if st, body, _ := do("/g/x"); st != 403 || body != "denied by auth" || hits.Load() != before {
		t.Errorf("denied: %d %q (backend hit %v), want 403 %q and no backend hit", st, body, hits.Load() != before, "denied by auth")
	}
	if n := checks.Load(); n != 4 {
		t.Errorf("auth upstream got %d callouts, want 4", n)
	}
	if st, body, _ := do("/plain"); st != 200 || body != "backend" {
		t.Errorf("plain route: %d %q", st, body)
	}
	stopAuth()
	if st, body, _ := do("/g/x"); st != 503 || body != "callout failed" {
		t.Errorf("auth upstream down: %d %q, want 503 %q", st, body, "callout failed")
	}
}
