package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestInspect runs each SDK's inspect example, which answers with what every getter returned,
// so the SDKs' getters, NUL-sequence parsing, body streaming and appending writes are checked
// against the real host.
func TestInspect(t *testing.T) {
	for _, lang := range Languages {
		t.Run(lang, func(t *testing.T) {
			w := wasm(t, lang, "inspect")
			be := startBackend(t)
			addr := startGateway(t, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, plugin_cache_dir: %q }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s, idle_timeout: 300ms }
plugins:
  guest: { file: %q, timeout: 2s, config: { greeting: hi } }
routes:
  - name: plugin
    match: { path_prefix: /p/ }
    upstream: be
    filters:
      - guest: { Route: p }
`, cacheDir, be.addr, w))
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + "/p/x?q=1")
			req.Header.SetMethod("POST")
			req.Header.Add("X-Multi", "a")
			req.Header.Add("X-Multi", "b")
			req.SetBodyString("hello")
			if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != 200 || string(resp.Header.ContentType()) != "text/plain" {
				t.Errorf("status %d, Content-Type %q; want 200 text/plain", resp.StatusCode(), resp.Header.ContentType())
			}
			if be.hits.Load() != 0 {
				t.Errorf("the upstream was called %d times; the plugin answers itself", be.hits.Load())
			}
			got := map[string]string{}
			for _, line := range strings.Split(strings.TrimSuffix(string(resp.Body()), "\n"), "\n") {
				k, v, _ := strings.Cut(line, "=")
				got[k] = v
			}
			want := map[string]string{
				"method":   "POST",
				"uri":      "/p/x?q=1",
				"protocol": "HTTP/1.1",
				"config":   `{"Route":"p","greeting":"hi"}`, // the route's keys merged in, case kept
				"multi":    "a,b",
				"listed":   "yes",
				"body":     "hello",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if !strings.HasPrefix(got["source"], "127.0.0.1:") {
				t.Errorf("source = %q, want 127.0.0.1:<port>", got["source"])
			}
			if t.Failed() {
				t.Logf("body:\n%s", resp.Body())
			}
		})
	}
}
