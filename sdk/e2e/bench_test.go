package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
)

// BenchmarkAddHeader measures what each SDK's add-header plugin adds to a request. Every route
// ends in a `respond` filter (a local 200, no upstream I/O to drown the difference); the
// "none" route is that filter alone, each language's route puts its add-header plugin in front,
// so the plugin runs both handle_request and handle_response. The added cost per request is a
// language's ns/op minus none's, and likewise for allocs/op. The engine's handler is driven
// in-process with one reused request context, as fasthttp's server would.
func BenchmarkAddHeader(b *testing.B) {
	var routes, plugins strings.Builder
	var langs []string
	for _, lang := range Languages {
		bl := buildAll(b)[lang]
		if bl.failed != "" {
			b.Fatalf("building the %s examples failed:\n%s", lang, bl.failed)
		}
		if bl.skip != "" {
			b.Logf("%s skipped: %s", lang, bl.skip)
			continue
		}
		langs = append(langs, lang)
		fmt.Fprintf(&plugins, "  %s-add-header: { file: %q, timeout: 1s }\n", lang, filepath.Join(bl.dir, lang+"-add-header.wasm"))
		fmt.Fprintf(&routes, `  - name: %[1]s
    match: { path_prefix: /%[1]s/ }
    upstream: none
    filters:
      - %[1]s-add-header: {}
      - respond: { status: 200, body: ok }
`, lang)
	}
	if plugins.Len() == 0 {
		plugins.WriteString("  {}\n")
	}
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: %q }
access_log: { enabled: false }
upstreams:
  none: { kind: echo }
plugins:
%s
routes:
  - name: none
    match: { path_prefix: /none/ }
    upstream: none
    filters:
      - respond: { status: 200, body: ok }
%s`, cacheDir, plugins.String(), routes.String())
	path := filepath.Join(b.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	e, err := engine.New(path, zerolog.Nop())
	if err != nil {
		b.Fatalf("engine: %v\nconfig:\n%s", err, cfg)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})

	for _, name := range append([]string{"none"}, langs...) {
		b.Run(name, func(b *testing.B) {
			var req fasthttp.Request
			req.SetRequestURI("http://bench.local/" + name + "/x")
			var rc fasthttp.RequestCtx
			rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			serve := func() {
				rc.Response.Reset()
				e.Handle(&rc)
			}
			serve()
			if rc.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
			}
			if name != "none" {
				if got, want := string(rc.Response.Header.Peek("X-Wasm-Plugin")), name+"-add-header"; got != want {
					b.Fatalf("X-Wasm-Plugin %q, want %q", got, want)
				}
				if got := string(rc.Request.Header.Peek("X-Wasm")); got != name {
					b.Fatalf("request X-Wasm %q, want %q", got, name)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serve()
			}
		})
	}
}
