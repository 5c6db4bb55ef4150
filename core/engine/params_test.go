package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// paramProbe is a test filter that reports the route's "id" parameter as the filters after a
// path rewrite see it: in the request phase (X-Id-Request) and after the upstream answered
// (X-Id-Response).
type paramProbe struct{ seen []byte }

func (p *paramProbe) OnRequest(c *filter.Ctx) filter.Status {
	c.Request.Header.Set("X-Id-Request", string(c.Param("id")))
	return filter.Continue
}

func (p *paramProbe) OnResponse(c *filter.Ctx) {
	c.Response.Header.Set("X-Id-Request", string(c.Request.Header.Peek("X-Id-Request")))
	c.Response.Header.Set("X-Id-Response", string(c.Param("id")))
}

func init() {
	filter.Register("test-param-probe", func(filter.Env, filter.Decoder) (filter.Filter, error) {
		return &paramProbe{}, nil
	})
}

// TestParamsSurvivePathRewrite checks that a path parameter stays what the router captured
// for the whole request, after a filter rewrote the path and after the upstream answered, on
// normalised and on raw routes.
func TestParamsSurvivePathRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes:
  - name: users
    match: { path: "/users/{id}" }
    upstream: be
    filters:
      - rewrite: { path: /a/much/longer/path/than/the/original/one }
      - test-param-probe: {}
  - name: raw
    match: { path: "/raw/{id}" }
    normalize_path: false
    upstream: be
    filters:
      - rewrite: { path: /another/much/longer/path/than/the/original }
      - test-param-probe: {}
`, backend(t))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	c := &fasthttp.Client{}
	for _, tc := range []struct{ url, want string }{
		{"/users/42", "42"},
		{"/raw/42", "42"},
	} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + tc.url)
		if err := c.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"X-Id-Request", "X-Id-Response"} {
			if got := string(resp.Header.Peek(h)); got != tc.want {
				t.Errorf("%s: %s = %q, want %q", tc.url, h, got, tc.want)
			}
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}
