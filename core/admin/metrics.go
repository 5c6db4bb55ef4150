package admin

import (
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/weir-gateway/weir/core/telemetry"
)

// metricsHandler serves telemetry.Prom in the Prometheus text format, or OpenMetrics when the
// scraper asks for it (Accept: application/openmetrics-text). promhttp is a net/http handler;
// the adaptor runs it on the admin server's fasthttp request, which costs a few allocations per
// scrape and nothing on the data plane. Errors of one collector are logged and the rest served
// (ContinueOnError), so one broken family never hides the others.
var metricsHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(telemetry.Prom, promhttp.HandlerOpts{
	EnableOpenMetrics: true,
	ErrorHandling:     promhttp.ContinueOnError,
}))

func (a *Server) metrics(rc *fasthttp.RequestCtx) {
	metricsHandler(rc)
}
