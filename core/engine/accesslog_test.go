package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestAccessLogFields runs requests through a gateway behind a trusted proxy and checks what
// each line reports: the client after X-Forwarded-For, host, query, user agent, the upstream's
// status and address, and a selected subset only.
func TestAccessLogFields(t *testing.T) {
	be := backend(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "access.log")
	path := filepath.Join(dir, "weir.yaml")
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", trusted_proxies: [127.0.0.1/32] }
access_log:
  enabled: true
  output: %q
  fields: [client, host, method, path, query, status, upstream, upstream_status, user_agent, route, error]
upstreams: { be: { targets: [%q] } }
routes:
  - { name: al, match: { path_prefix: /al/ }, upstream: be }
`, logFile, be))
	_, addr := start(t, path)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/al/x?q=1&r=two")
	req.UseHostHeader = true
	req.Header.SetHost("shop.test")
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	req.Header.SetUserAgent("probe/1.0")
	if err := fasthttp.Do(req, resp); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("%d %v", resp.StatusCode(), err)
	}
	req.SetRequestURI("http://" + addr + "/none")
	if err := fasthttp.Do(req, resp); err != nil || resp.StatusCode() != 404 {
		t.Fatalf("%d %v", resp.StatusCode(), err)
	}
	// The writer goroutine flushes every 100ms.
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); strings.Count(string(b), "\n") < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		var err error
		if b, err = os.ReadFile(logFile); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []map[string]any{
		{"client": "198.51.100.9", "host": "shop.test", "method": "GET", "path": "/al/x", "query": "q=1&r=two",
			"status": 200.0, "upstream": be, "upstream_status": 200.0, "user_agent": "probe/1.0", "route": "al"},
		{"client": "198.51.100.9", "host": "shop.test", "method": "GET", "path": "/none", "query": "",
			"status": 404.0, "upstream": "", "upstream_status": 0.0, "user_agent": "probe/1.0", "route": ""},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b)
	}
	for i, l := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("line %d:\ngot  %v\nwant %v", i, got, want[i])
		}
	}
}
