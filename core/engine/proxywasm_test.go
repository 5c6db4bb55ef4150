package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	// The proxy-wasm ABI is linked in as cmd/weir does; wasmhost (http-wasm) is linked by the
	// other plugin tests, and the loaders try both.
	_ "github.com/weir-gateway/weir/plugins/proxywasm"
)

const proxyWasmConfig = `
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off" }
access_log: { enabled: false }
upstreams:
  echo: { kind: echo }
plugins:
  pw:
    file: filter.wasm
    timeout: 50ms
    memory_mb: 2
    fail: %s
    config: { Mode: Strict }
routes:
  - name: pw
    match: { path_prefix: /pw }
    upstream: echo
    filters:
      - pw: {}
  - name: plain
    match: { path: /plain }
    upstream: echo
`

func startProxyWasm(t *testing.T, fail string) string {
	t.Helper()
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "plugins", "proxywasm", "testdata", "filter.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "filter.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(proxyWasmConfig, fail)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	return addr
}

func fetchWith(t *testing.T, url string, hdr map[string]string) (int, string, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if err := (&fasthttp.Client{}).DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode(), string(resp.Body()), string(resp.Header.Peek("X-Resp")) + string(resp.Header.Peek("X-Local"))
}

// TestProxyWasmThroughGateway runs the proxy-wasm test filter on a route: response header and
// body rewrites, a local reply, a pause resumed by the plugin's timer, and a trap answered per
// the fail policy while another route keeps serving.
func TestProxyWasmThroughGateway(t *testing.T) {
	addr := startProxyWasm(t, "closed")
	base := "http://" + addr
	if status, body, x := fetchWith(t, base+"/pw/a", nil); status != 200 || body != "rewritten" || x != "yes" {
		t.Errorf("/pw/a: %d %q x-resp=%q, want 200 rewritten yes", status, body, x)
	}
	if status, body, x := fetchWith(t, base+"/pw/a", map[string]string{"X-Reply": "1"}); status != 418 || body != "teapot" || x != "1" {
		t.Errorf("local reply: %d %q x-local=%q", status, body, x)
	}
	if status, body, _ := fetchWith(t, base+"/pw/a", map[string]string{"X-Pause": "1"}); status != 200 || body != "rewritten" {
		t.Errorf("paused request: %d %q", status, body)
	}
	if status, _, _ := fetchWith(t, base+"/pw/a", map[string]string{"X-Trap": "1"}); status != 500 {
		t.Errorf("trap, fail closed: %d, want 500", status)
	}
	if status, _, _ := fetchWith(t, base+"/plain", nil); status != 200 {
		t.Errorf("/plain after the trap: %d", status)
	}
	if status, body, _ := fetchWith(t, base+"/pw/a", nil); status != 200 || body != "rewritten" {
		t.Errorf("after the trap: %d %q", status, body)
	}
}

func TestProxyWasmLoopFailOpen(t *testing.T) {
	addr := startProxyWasm(t, "open")
	t0 := time.Now()
	if status, _, _ := fetchWith(t, "http://"+addr+"/pw/a", map[string]string{"X-Loop": "1"}); status != 200 {
		t.Errorf("loop, fail open: %d, want 200", status)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("answered after %s (timeout 50ms)", d)
	}
}
