package proxywasm

import (
	_ "embed"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

//go:embed testdata/addheader.wasm
var addHeaderWasm []byte

// benchPipeline runs b.N requests through a pipeline of fs in front of an upstream that
// answers 200, in process.
func benchPipeline(b *testing.B, fs []filter.Filter) {
	var rc fasthttp.RequestCtx
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("/bench")
	req.Header.SetHost("example.com")
	req.Header.Set("User-Agent", "bench")
	rc.Init(req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 4242}, nil)
	names := make([]string, len(fs))
	p := filter.NewPipeline(fs, names)
	c := &filter.Ctx{}
	upstream := func(c *filter.Ctx) { c.Response.SetStatusCode(200) }
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.Reset(&rc, "r")
		p.Run(c, upstream)
		rc.Request.Header.Del("X-Hello")
	}
}

// BenchmarkPlain is the pipeline with no filter: the baseline the plugin's cost is read against.
func BenchmarkPlain(b *testing.B) { benchPipeline(b, nil) }

// BenchmarkAddHeader is a proxy-wasm filter that sets one request header: per request a
// context is created, proxy_on_request_headers, proxy_on_response_headers, proxy_on_done,
// proxy_on_log and proxy_on_delete run, and one host call writes the header.
func BenchmarkAddHeader(b *testing.B) {
	f := newFilter(b, "pw-bench", pluginOpts{wasm: addHeaderWasm})
	benchPipeline(b, []filter.Filter{f})
}
