// Command miniproxy is the ceiling in the load comparison: the least a fasthttp reverse proxy
// can do. One fasthttp.Server hands every request to one keep-alive fasthttp.HostClient and
// copies the response back, with no routing, no filter pipeline, no header rules and no
// framing checks. Weir is built on the same two pieces, so the gap between the two is the
// price of everything Weir adds; the target is that Weir keeps at least 95% of this
// throughput on a small keep-alive GET.
package main

import (
	"flag"
	"log"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9003", "listen address")
	upstream := flag.String("upstream", "127.0.0.1:9001", "backend host:port")
	flag.Parse()

	hc := &fasthttp.HostClient{
		Addr: *upstream,
		// Large enough that requests never wait for a connection at the benchmark's
		// concurrency; a wait would make the ceiling lower than fasthttp allows.
		MaxConns:            1024,
		MaxIdleConnDuration: 90 * time.Second,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
	}

	s := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			// The request is sent as received, so the Host header still names the proxy;
			// the backend ignores it, and rewriting it would be work Weir is not asked to
			// skip.
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway: "+err.Error(), fasthttp.StatusBadGateway)
			}
		},
		Name: "miniproxy",
		// Server and Date come from the backend's response; adding our own would make the
		// ceiling do work a transparent proxy does not.
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	log.Printf("miniproxy listening on %s, forwarding to %s", *addr, *upstream)
	if err := s.ListenAndServe(*addr); err != nil {
		log.Fatalf("miniproxy: serve %s: %v", *addr, err)
	}
}
