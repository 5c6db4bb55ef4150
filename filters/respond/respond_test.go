package respond

import (
	"os"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	_ "github.com/weir-gateway/weir/filters/headers" // used by a README example
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

// build runs the factory on a config written in YAML, the way the engine does.
func build(tb testing.TB, yamlCfg string) (filter.Filter, error) {
	return filtertest.NewFilter(tb, New, Name, yamlCfg)
}

func mustBuild(tb testing.TB, yamlCfg string) filter.Filter {
	return filtertest.MustNewFilter(tb, New, Name, yamlCfg)
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

func TestOnRequest(t *testing.T) {
	tests := []struct {
		name        string
		cfg         string
		wantStatus  int
		wantBody    string
		wantType    string
		wantHeaders map[string]string
	}{
		{"status only", `{status: 403}`, 403, "", "", nil},
		{"body gets the default type", `{status: 403, body: "no\n"}`, 403, "no\n", defaultContentType, nil},
		{"own type", `{status: 200, body: "{}", content_type: application/json}`, 200, "{}", "application/json", nil},
		{"headers", `{status: 503, headers: {Retry-After: "120", x-reason: maint}}`, 503, "", "",
			map[string]string{"Retry-After": "120", "X-Reason": "maint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, "GET /admin HTTP/1.1\nHost: h\n")
			// As the engine's server does, so a missing type reads as missing.
			c.Response.Header.SetNoDefaultContentType(true)
			if got := f.OnRequest(c); got != filter.Stop {
				t.Fatalf("OnRequest = %v, want Stop", got)
			}
			if got := c.Response.StatusCode(); got != tt.wantStatus {
				t.Errorf("status: got %d, want %d", got, tt.wantStatus)
			}
			if got := string(c.Response.Body()); got != tt.wantBody {
				t.Errorf("body: got %q, want %q", got, tt.wantBody)
			}
			if got := string(c.Response.Header.ContentType()); got != tt.wantType {
				t.Errorf("content type: got %q, want %q", got, tt.wantType)
			}
			for k, want := range tt.wantHeaders {
				if got := string(c.Response.Header.Peek(k)); got != want {
					t.Errorf("header %s: got %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestStopsPipeline checks that neither a later filter nor the upstream sees the request.
func TestStopsPipeline(t *testing.T) {
	later := &recorder{}
	p := filter.NewPipeline([]filter.Filter{mustBuild(t, `{status: 403}`), later}, []string{Name, "later"})
	c := filtertest.NewCtx(t, "GET /admin HTTP/1.1\nHost: h\n")
	reached := false
	p.Run(c, func(*filter.Ctx) { reached = true })
	if reached || later.calls != 0 {
		t.Errorf("upstream reached %v, later filter called %d times; want neither", reached, later.calls)
	}
	if got := c.Response.StatusCode(); got != 403 {
		t.Errorf("status: got %d, want 403", got)
	}
}

type recorder struct{ calls int }

func (r *recorder) OnRequest(*filter.Ctx) filter.Status { r.calls++; return filter.Continue }
func (r *recorder) OnResponse(*filter.Ctx)              {}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  string
		want string // substring of the error
	}{
		{`{}`, "status is required"},
		{`{status: 100}`, "not a final status"},
		{`{status: 600}`, "not a final status"},
		{`{status: 204, body: x}`, "never carries a body"},
		{`{status: 200, content_type: text/html}`, "without a body"},
		{`{status: 200, body: x, content_type: "a\nb"}`, "CR, LF or NUL"},
		{`{status: 200, headers: {"X A": v}}`, "not allowed in a token"},
		{`{status: 200, headers: {"": v}}`, "empty header name"},
		{`{status: 200, headers: {Content-Length: "1"}}`, "managed by the proxy"},
		{`{status: 200, headers: {connection: close}}`, "managed by the proxy"},
		{`{status: 200, headers: {Content-Type: x}}`, "use content_type"},
		{`{status: 200, headers: {X-A: "1", x-a: "2"}}`, "given twice"},
		{`{status: 200, headers: {X-A: 1}}`, "must be a string"},
		{`{status: 200, headers: {X-A: "a\rb"}}`, "CR, LF or NUL"},
		{`{status: 200, headers: {X-A: "a\u0001b"}}`, "control byte"},
		{`{status: 200, bogus: 1}`, "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build(%s): got error %v, want one containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

const allocCfg = `{status: 503, body: "maintenance\n", headers: {Retry-After: "120", X-Reason: maint}}`

func TestZeroAllocs(t *testing.T) {
	f := mustBuild(t, allocCfg)
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	allocs := testing.AllocsPerRun(200, func() {
		f.OnRequest(c)
		f.OnResponse(c)
	})
	if allocs != 0 {
		t.Fatalf("OnRequest allocates %v times per request, want 0", allocs)
	}
}

func BenchmarkRespond(b *testing.B) {
	f := mustBuild(b, allocCfg)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}
