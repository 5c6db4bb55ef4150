package admin

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/rs/zerolog"
)

// newValidator parses openapi.json and checks it against the OpenAPI 3.1 schema.
func newValidator(t *testing.T) validator.Validator {
	t.Helper()
	var head struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(openapiDoc, &head); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if !strings.HasPrefix(head.OpenAPI, "3.1.") {
		t.Fatalf("openapi.json says openapi %q, want 3.1.x", head.OpenAPI)
	}
	doc, err := libopenapi.NewDocument(openapiDoc)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("openapi.json: %s", e.Reason)
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", f.FieldPath, f.Reason)
			}
		}
		t.FailNow()
	}
	return v
}

// TestOpenAPIDescribesEveryEndpoint: the document and the server agree on the endpoints and
// their methods, in both directions, and the index has a summary for each.
func TestOpenAPIDescribesEveryEndpoint(t *testing.T) {
	newValidator(t)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	a := New(nil, Options{Pprof: true}, zerolog.Nop())
	served := maps.Clone(a.endpoints)
	served[consolePrefix] = endpoint{method: "GET"} // dispatched before the endpoints (handle)
	for path, ep := range served {
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("%s is served but core/admin/openapi.json does not describe it (add it there and to core/admin/README.md)", path)
			continue
		}
		if _, ok := ops[strings.ToLower(ep.method)]; !ok || len(ops) != 1 {
			t.Errorf("%s: openapi.json has operations %v, the server takes %s", path, slices.Collect(maps.Keys(ops)), ep.method)
		}
		if summaries[path] == "" {
			t.Errorf("%s has no summary in openapi.json", path)
		}
	}
	for path := range doc.Paths {
		if _, ok := served[path]; !ok {
			t.Errorf("openapi.json describes %s, which the server does not serve", path)
		}
	}
	// The README, the reference for people, names every endpoint too.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for path := range served {
		if !strings.Contains(string(readme), "`"+path+"`") {
			t.Errorf("core/admin/README.md does not name `%s`", path)
		}
	}
}

const openapiCfg = `
server: { admin_token: tok, drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  demo: { kind: echo }
  api: { targets: ["127.0.0.1:1"], health: { path: /healthz, interval: 1h } }
routes:
  - name: hello
    match: { path: /hello, methods: [GET] }
    upstream: demo
    filters:
      - headers: { request: { set: { X-Api-Key: "hunter2" } } }
  - name: split
    match: { path_prefix: /split/ }
    split:
      upstreams: [ { upstream: demo, weight: 9 }, { upstream: api, weight: 1 } ]
      sticky: { cookie: side, ttl: 1h }
`

// TestResponsesMatchOpenAPI sends a request of each kind, answers and errors alike, and checks
// each answer against openapi.json.
func TestResponsesMatchOpenAPI(t *testing.T) {
	v := newValidator(t)
	eng, addr, path, _ := startEngineAdmin(t, openapiCfg, Options{Token: "tok", Pprof: true})
	serveEngine(t, eng)
	base := "http://" + addr

	check := func(method, p, token, ctype, body string, wantStatus int) {
		t.Helper()
		req, err := http.NewRequest(method, base+p, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != wantStatus {
			t.Errorf("%s %s = %d %s, want %d", method, p, resp.StatusCode, b, wantStatus)
		}
		if resp.StatusCode == 405 {
			// Not in the document, which describes the methods an endpoint takes.
			if allow := resp.Header.Get("Allow"); allow == "" {
				t.Errorf("%s %s = 405 without Allow", method, p)
			}
			return
		}
		// The validator reads the body again.
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		if ok, errs := v.ValidateHttpResponse(req, resp); !ok {
			for _, e := range errs {
				t.Errorf("%s %s (%d): %s", method, p, resp.StatusCode, e.Reason)
				for _, f := range e.SchemaValidationErrors {
					t.Errorf("  %s: %s", f.FieldPath, f.Reason)
				}
			}
			t.Logf("body: %s", b)
		}
	}
	const js = "application/json"
	check("GET", "/", "tok", "", "", 200)
	check("GET", "/openapi.json", "tok", "", "", 200)
	check("GET", "/healthz", "", "", "", 200)
	check("GET", "/readyz", "", "", "", 200)
	check("GET", "/config", "tok", "", "", 200)
	check("GET", "/routes", "tok", "", "", 200)
	check("GET", "/stats", "tok", "", "", 200)
	check("GET", "/metrics", "tok", "", "", 200)
	check("GET", "/console/", "", "", "", 200)
	check("GET", "/upstreams", "tok", "", "", 200)
	check("POST", "/reload", "tok", js, "", 200)
	check("GET", "/reloads", "tok", "", "", 200)
	check("POST", "/cache/purge", "tok", js, `{"prefix":"example.com/"}`, 200)
	check("GET", "/debug/pprof/", "tok", "", "", 200)

	check("GET", "/config", "", "", "", 401)
	check("GET", "/config", "wrong", "", "", 401)
	check("GET", "/reload", "tok", "", "", 405)
	check("POST", "/reload", "tok", "text/plain", "", 415)
	check("POST", "/cache/purge", "tok", js, `{"key":"a","tag":"b"}`, 400)

	// The file now differs from what runs: /config shows both.
	changed := strings.Replace(openapiCfg, "drain_timeout: 5s", "drain_timeout: 7s", 1)
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	check("GET", "/config", "tok", "", "", 200)
	if err := os.WriteFile(path, []byte("routes: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("GET", "/config", "tok", "", "", 200)
	check("POST", "/reload", "tok", js, "", 422)

	_ = eng.Shutdown(context.Background())
	check("GET", "/readyz", "", "", "", 503)
}
