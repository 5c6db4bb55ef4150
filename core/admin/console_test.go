package admin

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// get fetches url with the request headers given as name, value pairs and returns the response.
func get(t *testing.T, method, url string, header ...string) *fasthttp.Response {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), &fasthttp.Response{}
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	setHeaders(req, header)
	resp.SkipBody = method == fasthttp.MethodHead
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

// setHeaders sets the name, value pairs of header on req; a Host pair replaces the Host header.
func setHeaders(req *fasthttp.Request, header []string) {
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.UseHostHeader = true
			req.Header.SetHost(header[i+1])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
}

// TestConsoleFiles: the page and its files are served with their types, a strict policy and
// revalidation, without the token; everything else keeps needing it.
func TestConsoleFiles(t *testing.T) {
	base, _ := setup(t, "tok")
	tests := []struct {
		method, path string
		header       []string
		status       int
		ctype, body  string
	}{
		// The page and its files load without the token: they hold no data.
		{"GET", "/console/", nil, 200, "text/html; charset=utf-8", "<title>Weir console</title>"},
		{"GET", "/console/console.js", nil, 200, "text/javascript; charset=utf-8", "Authorization"},
		{"GET", "/console/prom.js", nil, 200, "text/javascript; charset=utf-8", "function quantile"},
		{"GET", "/console/console.css", nil, 200, "text/css; charset=utf-8", "--bg"},
		{"HEAD", "/console/", nil, 200, "text/html; charset=utf-8", ""},
		{"GET", "/console/nope.js", nil, 404, "application/json", "no such console file"},
		{"GET", "/console/index.html", nil, 404, "application/json", "no such console file"},
		{"POST", "/console/", []string{"Content-Type", "application/json"}, 405, "application/json", "use GET"},
		{"DELETE", "/console/prom.js", nil, 405, "application/json", "use GET"},
		// The data stays behind the token, however the path is spelt.
		{"GET", "/console/../config", nil, 401, "application/json", "bearer token"},
		{"GET", "/console/%2e%2e/config", nil, 401, "application/json", "bearer token"},
		{"GET", "/console/..%2fconfig", nil, 401, "application/json", "bearer token"},
		{"GET", "/console/%2E%2E%2Froutes", nil, 401, "application/json", "bearer token"},
		{"GET", "/CONSOLE/", nil, 401, "application/json", "bearer token"},
		{"GET", "/consolex", nil, 401, "application/json", "bearer token"},
		// The Host check applies to the console too (a rebound DNS name gets nothing).
		{"GET", "/console/", []string{"Host", "evil.example:9901"}, 403, "application/json", "host not accepted"},
		{"GET", "/console/console.js", []string{"Host", "evil.example"}, 403, "application/json", "host not accepted"},
	}
	for _, tt := range tests {
		resp := get(t, tt.method, base+tt.path, tt.header...)
		body := string(resp.Body())
		if resp.StatusCode() != tt.status || string(resp.Header.ContentType()) != tt.ctype || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s %v = %d %q %.80q, want %d %q containing %q", tt.method, tt.path, tt.header,
				resp.StatusCode(), resp.Header.ContentType(), body, tt.status, tt.ctype, tt.body)
		}
		if resp.StatusCode() == 200 {
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Cache-Control", "ETag"} {
				if len(resp.Header.Peek(h)) == 0 {
					t.Errorf("%s %s: no %s header", tt.method, tt.path, h)
				}
			}
			if csp := string(resp.Header.Peek("Content-Security-Policy")); !strings.HasPrefix(csp, "default-src 'self';") ||
				strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("%s: weak Content-Security-Policy %q", tt.path, csp)
			}
			if acao := resp.Header.Peek("Access-Control-Allow-Origin"); len(acao) > 0 {
				t.Errorf("%s: Access-Control-Allow-Origin %q", tt.path, acao)
			}
		}
	}

	resp := get(t, "GET", base+"/console")
	if resp.StatusCode() != 301 || string(resp.Header.Peek("Location")) != "/console/" {
		t.Errorf("/console = %d Location %q, want 301 to /console/", resp.StatusCode(), resp.Header.Peek("Location"))
	}

	// A file the browser holds is revalidated, and costs a 304 while unchanged.
	etag := string(get(t, "GET", base+"/console/console.js").Header.Peek("ETag"))
	for _, inm := range []string{etag, "W/" + etag, `"x", ` + etag, "*"} {
		if r := get(t, "GET", base+"/console/console.js", "If-None-Match", inm); r.StatusCode() != 304 || len(r.Body()) != 0 {
			t.Errorf("If-None-Match %s = %d with %d bytes, want 304 and no body", inm, r.StatusCode(), len(r.Body()))
		}
	}
	if r := get(t, "GET", base+"/console/console.js", "If-None-Match", `"other"`); r.StatusCode() != 200 {
		t.Errorf("If-None-Match of another version = %d, want 200", r.StatusCode())
	}
}

// TestConsoleRequests sends the admin API the requests the console's page makes, as a browser
// sends them, and their cross-site and tokenless variants: the console works through the
// admin API's checks without loosening them.
func TestConsoleRequests(t *testing.T) {
	base, _ := setup(t, "tok")
	host := strings.TrimPrefix(base, "http://")
	origin := "http://" + host
	fromPage := []string{"Origin", origin, "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "cors",
		"Referer", origin + "/console/"}
	with := func(h ...string) []string { return append(append([]string{}, fromPage...), h...) }
	tests := []struct {
		name, method, path string
		header             []string
		status             int
	}{
		{"read with the token", "GET", "/routes", with("Authorization", "Bearer tok"), 200},
		{"read without it", "GET", "/routes", fromPage, 401},
		{"metrics or stats without it", "GET", "/stats", fromPage, 401},
		{"reload button", "POST", "/reload", with("Authorization", "Bearer tok", "Content-Type", "application/json"), 200},
		{"reload without the token", "POST", "/reload", with("Content-Type", "application/json"), 401},
		{"reload from another site", "POST", "/reload",
			[]string{"Authorization", "Bearer tok", "Content-Type", "application/json", "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, 403},
		{"reload from another port", "POST", "/reload",
			[]string{"Authorization", "Bearer tok", "Content-Type", "application/json", "Origin", "http://127.0.0.1:1"}, 403},
		{"reload as a form", "POST", "/reload", with("Authorization", "Bearer tok", "Content-Type", "text/plain"), 415},
		{"reload through a rebound name", "POST", "/reload",
			with("Authorization", "Bearer tok", "Content-Type", "application/json", "Host", "evil.example"), 403},
	}
	for _, tt := range tests {
		if r := get(t, tt.method, base+tt.path, tt.header...); r.StatusCode() != tt.status {
			t.Errorf("%s: %s %s = %d %s, want %d", tt.name, tt.method, tt.path, r.StatusCode(), r.Body(), tt.status)
		}
	}
}

// TestConsoleSelfContained: the page loads nothing from elsewhere and runs no inline code, which
// its Content-Security-Policy would refuse anyway.
func TestConsoleSelfContained(t *testing.T) {
	ref := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*"([^"]*)"`)
	for name, a := range consoleAssets {
		body := string(a.body)
		for _, m := range ref.FindAllStringSubmatch(body, -1) {
			if strings.Contains(m[1], ":") || strings.HasPrefix(m[1], "/") {
				t.Errorf("console file %q refers to %q: only files beside it are allowed", name, m[1])
			}
		}
		for _, bad := range []string{"<script>", "style=", "onclick", "onload", "url(", "@import", "innerHTML", "eval(", "localStorage"} {
			if strings.Contains(body, bad) {
				t.Errorf("console file %q contains %q", name, bad)
			}
		}
	}
	if len(consoleAssets) != 4 {
		t.Errorf("console has %d files, want 4 (index.html, console.css, console.js, prom.js)", len(consoleAssets))
	}
}

// TestConsoleJS runs the console's JavaScript unit tests (testdata/prom_test.js) with node.
func TestConsoleJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("WEIR_REQUIRE_ALL") == "1" {
			t.Fatal("node is not on PATH (WEIR_REQUIRE_ALL=1)")
		}
		t.Skip("node is not on PATH; the console's JavaScript tests need it")
	}
	out, err := exec.Command(node, "--test", "testdata/prom_test.js").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test testdata/prom_test.js: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# fail 0") {
		t.Fatalf("node reported failures:\n%s", out)
	}
}
