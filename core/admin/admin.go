// Package admin serves the gateway's admin API on its own listener (loopback by default):
// health, the running config with secrets redacted, the route table, reloads and their history.
// It is deliberately separate from the data-plane listener so that it can never be reached
// through a route and its traffic never competes with proxied requests.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"net"
	"strings"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"

	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/filter"
	pluginrt "github.com/weir-gateway/weir/plugins/runtime"
)

// Server is the admin API of one engine.
type Server struct {
	eng       *engine.Engine
	token     []byte
	srv       *fasthttp.Server
	endpoints map[string]endpoint
}

type endpoint struct {
	method string
	fn     func(*fasthttp.RequestCtx)
}

// New returns an admin server for eng. When token is not empty every request must carry
// "Authorization: Bearer <token>".
func New(eng *engine.Engine, token string, log zerolog.Logger) *Server {
	a := &Server{eng: eng, token: []byte(token)}
	a.endpoints = map[string]endpoint{
		"/healthz": {"GET", a.healthz},
		"/config":  {"GET", a.config},
		"/routes":  {"GET", a.routes},
		"/reload":  {"POST", a.reload},
		"/reloads": {"GET", a.reloads},
		"/stats":   {"GET", a.stats},
		// Every target of every upstream: healthy, ejected until …, or unhealthy, with its
		// in-flight requests, latency estimate and last active check.
		"/upstreams": {"GET", a.upstreams},
	}
	a.srv = &fasthttp.Server{
		Handler:               a.handle,
		Name:                  "weir-admin",
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{log},
	}
	return a
}

// Serve answers on ln until Shutdown.
func (a *Server) Serve(ln net.Listener) error { return a.srv.Serve(ln) }

// Shutdown stops the admin listener.
func (a *Server) Shutdown() error { return a.srv.Shutdown() }

func (a *Server) handle(rc *fasthttp.RequestCtx) {
	if len(a.token) > 0 && !a.authorized(rc) {
		rc.Response.Header.Set("WWW-Authenticate", `Bearer realm="weir-admin"`)
		writeJSON(rc, fasthttp.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
		return
	}
	path, method := string(rc.Path()), string(rc.Method())
	if strings.HasPrefix(path, "/debug/pprof/") {
		// Go's profiler, for CPU and heap profiles of a live gateway; loopback-only like the
		// rest of the admin API, and behind its token when one is set.
		pprofhandler.PprofHandler(rc)
		return
	}
	ep, ok := a.endpoints[path]
	switch {
	case !ok:
		writeJSON(rc, fasthttp.StatusNotFound, map[string]string{"error": "no such admin endpoint"})
	case method != ep.method && !(ep.method == "GET" && method == "HEAD"):
		rc.Response.Header.Set("Allow", ep.method)
		writeJSON(rc, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use " + ep.method})
	default:
		ep.fn(rc)
	}
}

func (a *Server) authorized(rc *fasthttp.RequestCtx) bool {
	h := rc.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return false
	}
	return subtle.ConstantTimeCompare(h[len(prefix):], a.token) == 1
}

func (a *Server) healthz(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, map[string]string{"status": "ok", "config": a.eng.Config().Hash})
}

func (a *Server) config(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, a.eng.Config().Redacted())
}

func (a *Server) routes(rc *fasthttp.RequestCtx) {
	type routeView struct {
		Name     string   `json:"name"`
		Match    any      `json:"match"`
		Upstream string   `json:"upstream"`
		Filters  []string `json:"filters"`
	}
	cfg := a.eng.Config()
	out := make([]routeView, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		v := routeView{Name: r.Name, Match: r.Match, Upstream: r.Upstream, Filters: []string{}}
		for _, f := range r.Filters {
			v.Filters = append(v.Filters, f.Name)
		}
		out = append(out, v)
	}
	writeJSON(rc, fasthttp.StatusOK, out)
}

func (a *Server) reload(rc *fasthttp.RequestCtx) {
	ev, err := a.eng.Reload("admin")
	status := fasthttp.StatusOK
	if err != nil {
		// The running config stays in place; 422 says the new one was understood but rejected.
		status = fasthttp.StatusUnprocessableEntity
	}
	writeJSON(rc, status, ev)
}

func (a *Server) reloads(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, map[string]any{"stats": a.eng.Stats(), "history": a.eng.History()})
}

func (a *Server) upstreams(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, a.eng.Upstreams())
}

func (a *Server) stats(rc *fasthttp.RequestCtx) {
	writeJSON(rc, fasthttp.StatusOK, map[string]any{
		"engine": a.eng.Stats(), "shared_objects": a.eng.Shared().Len(), "filters": filter.Names(),
		// Per plugin name: calls, traps, timeouts, pool waits, live instances.
		"plugins": pluginrt.Stats(), "plugin_instances": pluginrt.LiveInstances(),
	})
}

func writeJSON(rc *fasthttp.RequestCtx, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = fasthttp.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	rc.SetStatusCode(status)
	rc.SetContentType("application/json")
	rc.SetBody(append(b, '\n'))
}

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn().Str("component", "admin").Msgf(format, args...)
}
