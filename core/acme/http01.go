package acme

import (
	"bytes"
	"net/http"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// ChallengePrefix is the path under which an http-01 validation asks for its token.
const ChallengePrefix = "/.well-known/acme-challenge/"

// ServeHTTPChallenge answers rc when it is an http-01 validation of a challenge this Manager
// (or another gateway sharing its storage) has open, and reports whether it did. Anything
// else, including a guess at a token, is left for routing.
func (m *Manager) ServeHTTPChallenge(rc *fasthttp.RequestCtx) bool {
	if !m.http01 || !rc.IsGet() || !bytes.HasPrefix(rc.Path(), []byte(ChallengePrefix)) {
		return false
	}
	var r http.Request
	if err := fasthttpadaptor.ConvertRequest(rc, &r, true); err != nil {
		return false
	}
	w := responseWriter{h: http.Header{}}
	// certmagic checks the Host against the challenge's identifier (no DNS rebinding) and the
	// path against the token exactly.
	if !m.issuer.HandleHTTPChallenge(&w, &r) {
		return false
	}
	rc.Response.Reset()
	rc.SetStatusCode(w.status())
	rc.SetContentType("text/plain")
	rc.SetBody(w.body.Bytes())
	rc.SetConnectionClose()
	return true
}

// responseWriter collects what certmagic writes: a status and a short body.
type responseWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *responseWriter) Header() http.Header         { return w.h }
func (w *responseWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *responseWriter) WriteHeader(code int)        { w.code = code }

func (w *responseWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
