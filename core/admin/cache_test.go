package admin

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/testkit"
)

const cacheCfg = `
server: { listen: "127.0.0.1:0" }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes:
  - name: cached
    match: { path_prefix: /cached }
    upstream: demo
    filters:
      - cache: { ttl: 60s }
`

func post(t *testing.T, url, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI(url)
	req.Header.SetContentType(contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.SetBodyString(body)
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

func cacheStatus(t *testing.T, url string) string {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(resp.Header.Peek("Cache-Status"))
}

// TestCachePurge: POST /cache/purge removes entries by key, prefix and tag; it is a state
// change, so it takes JSON only and refuses cross-site requests like every other one.
func TestCachePurge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cacheCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	gw := testkit.Serve(t, eng)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := New(eng, Options{}, zerolog.Nop())
	go a.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = a.Shutdown() })
	admin := "http://" + ln.Addr().String() + "/cache/purge"

	for _, p := range []string{"/cached/a", "/cached/b", "/cached/c"} {
		if cs := cacheStatus(t, "http://"+gw+p); !strings.HasSuffix(cs, "stored") {
			t.Fatalf("%s: Cache-Status %q, want stored", p, cs)
		}
	}
	if cs := cacheStatus(t, "http://"+gw+"/cached/a"); cs != "weir; hit" {
		t.Fatalf("Cache-Status %q, want a hit", cs)
	}
	tests := []struct {
		body, ct   string
		header     []string
		wantStatus int
		wantBody   string
	}{
		{`{"key":"` + gw + `/cached/a"}`, "application/json", nil, 200, `"cache": 1`},
		{`{"prefix":"` + gw + `/cached/"}`, "application/json", nil, 200, `"cache": 2`},
		{`{"tag":"none"}`, "application/json", nil, 200, `"cache": 0`},
		{`{"key":"a","tag":"b"}`, "application/json", nil, 400, "exactly one"},
		{`{}`, "application/json", nil, 400, "exactly one"},
		{`{"url":"a"}`, "application/json", nil, 400, "one of key"},
		{`not json`, "application/json", nil, 400, "one of key"},
		{`{"prefix":"x"}`, "text/plain", nil, 415, "Content-Type"},
		{`{"prefix":"x"}`, "application/json", []string{"Origin", "http://evil.example"}, 403, "cross-origin"},
		{`{"prefix":"x"}`, "application/json", []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross-site"},
	}
	for _, tt := range tests {
		status, body := post(t, admin, tt.ct, tt.body, tt.header...)
		if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
			t.Errorf("POST %s (%s %v) = %d %s, want %d containing %q", tt.body, tt.ct, tt.header, status, body, tt.wantStatus, tt.wantBody)
		}
	}
	if cs := cacheStatus(t, "http://"+gw+"/cached/a"); !strings.HasSuffix(cs, "stored") {
		t.Errorf("after purge: Cache-Status %q, want a miss", cs)
	}
}
