// Command backend is the upstream that every proxy in the load comparison forwards to. It is
// deliberately trivial and fast, so that the figures measure the proxy in front of it rather
// than the application behind it:
//
//	GET  /     "Hello, World!" (13 bytes), the small keep-alive case the targets are set on
//	GET  /big  a 64 KiB body, for throughput-bound scenarios
//	GET  /1k   a 1 KiB body with Cache-Control: max-age=60, for the cache scenario
//	POST /post the request body's length in bytes, as decimal text
//	POST /v1/traces  200 with an empty body: an OTLP/HTTP trace collector that keeps nothing
//
// Every other path answers 404, so a misrouted proxy shows up as errors in wrk's output
// instead of as a suspiciously fast result.
package main

import (
	"bytes"
	"flag"
	"log"
	"strconv"

	"github.com/valyala/fasthttp"
)

var (
	hello = []byte("Hello, World!")
	// big is built once: filling 64 KiB per request would make the backend, not the proxy,
	// the cost being measured.
	big  = bytes.Repeat([]byte("0123456789abcdef"), 64*1024/16)
	oneK = bytes.Repeat([]byte("0123456789abcdef"), 1024/16)
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	flag.Parse()

	s := &fasthttp.Server{
		Handler: handle,
		Name:    "bench-backend",
	}
	log.Printf("backend listening on %s", *addr)
	if err := s.ListenAndServe(*addr); err != nil {
		log.Fatalf("backend: serve %s: %v", *addr, err)
	}
}

func handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/":
		ctx.SetContentType("text/plain")
		ctx.SetBody(hello)
	case "/big":
		ctx.SetContentType("application/octet-stream")
		ctx.SetBody(big)
	case "/1k":
		ctx.SetContentType("application/octet-stream")
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.SetBody(oneK)
	case "/post":
		if !ctx.IsPost() {
			ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
			return
		}
		ctx.SetContentType("text/plain")
		ctx.SetBody(strconv.AppendInt(nil, int64(len(ctx.PostBody())), 10))
	case "/v1/traces":
		// An OTLP/HTTP collector that keeps nothing: an empty ExportTraceServiceResponse is
		// success (bench/overhead.sh exports the gateway's spans here).
		ctx.SetContentType("application/x-protobuf")
	default:
		ctx.Error("not found", fasthttp.StatusNotFound)
	}
}
