package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/engine"
	_ "github.com/weir-gateway/weir/filters/all"
	_ "github.com/weir-gateway/weir/plugins/proxywasm" // the proxy-wasm plugin ABI
	_ "github.com/weir-gateway/weir/plugins/wasmhost"  // the http-wasm plugin ABI
)

// pipelines are the routes benchmarked through Engine.Handle. Each ends in a respond filter, so
// the figure is the router, the edge checks, the pipeline and the filters, with no network:
// "respond only" is the baseline the others add to.
var pipelines = []struct{ name, filters string }{
	{"respond only", ``},
	{"headers", `- headers: { request: { set: { X-A: "1" } }, response: { set: { X-B: "2" } } }`},
	{"request-id", `- request-id: {}`},
	{"rewrite", `- rewrite: { strip_prefix: /r }`},
	{"wasm plugin", `- hello: {}`},
	// Every iteration after the first is answered by the cache from the stored reply.
	{"cache hit", `- cache: { ttl: 60s }`},
	{"all built-ins", `- request-id: {}
      - rewrite: { strip_prefix: /r }
      - headers: { request: { set: { X-A: "1" } }, response: { set: { X-B: "2" } } }`},
	// Plugin scenarios beyond the demo plugin (proxy-wasm, SDK-built guests) go here.
}

const pipelineConfig = `
access_log: { enabled: false }
server: { plugin_cache_dir: "off" }
upstreams: { be: { targets: ["127.0.0.1:1"] } }
plugins:
  hello: { file: ../config/plugins/hello.wasm }
routes:
  - name: bench
    match: { path_prefix: /r/ }
    upstream: be
    filters:
      %s
      - respond: { status: 200, body: "Hello, World!" }
`

func BenchmarkPipeline(b *testing.B) {
	for _, p := range pipelines {
		b.Run(p.name, func(b *testing.B) {
			cfg, err := config.Parse("pipeline.yaml", []byte(fmt.Sprintf(pipelineConfig, p.filters)))
			if err != nil {
				b.Fatal(err)
			}
			e, err := engine.NewFromConfig(cfg, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			defer e.Shutdown(context.Background()) //nolint:errcheck // nothing listens
			var rc fasthttp.RequestCtx
			// Filters add to the request, so each iteration starts from a fresh one; building it
			// costs the same in every case, so differences between cases are the filters'.
			reset := func() {
				rc.Request.Reset()
				rc.Request.Header.SetMethod("GET")
				rc.Request.Header.SetHost("example.com")
				rc.Request.SetRequestURI("/r/users")
				rc.Request.Header.Set("User-Agent", "bench")
			}
			reset()
			e.Handle(&rc)
			if rc.Response.StatusCode() != 200 {
				b.Fatalf("status %d, body %q", rc.Response.StatusCode(), rc.Response.Body())
			}
			b.ReportAllocs()
			for b.Loop() {
				reset()
				e.Handle(&rc)
			}
		})
	}
}
