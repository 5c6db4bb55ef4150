package engine

import (
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// closeDelimited sends a response body of unknown length to an HTTP/1.0 client, which knows no
// chunked coding (RFC 9112 section 7): the head without Transfer-Encoding and with
// "Connection: close", then the body, whose end the close of the connection marks (section
// 6.3). fasthttp writes every streamed body of unknown length chunked, so the engine writes this
// one itself, on the connection fasthttp hands over once the handler returns. Bodies of known
// length, and HTTP/1.1 clients, are left to fasthttp. http10 is the client's version, read
// before the proxy made the request HTTP/1.1 for the upstream.
func (e *Engine) closeDelimited(rc *fasthttp.RequestCtx, http10 bool) {
	resp := &rc.Response
	if !http10 || !resp.IsBodyStream() || resp.Header.ContentLength() != -1 ||
		rc.Request.Header.IsHead() {
		return
	}
	resp.Header.Del(fasthttp.HeaderTransferEncoding)
	// fasthttp: no length; the connection closes after the body.
	resp.Header.SetContentLength(-2)
	timeout := e.listeners[0].srv.WriteTimeout // server.write_timeout, the same on every listener
	rc.HijackSetNoResponse(true)
	// fasthttp keeps the request context until the hijack handler returns, and closes the
	// body stream and the connection after it.
	rc.Hijack(func(c net.Conn) {
		w := deadlineWriter{c, timeout}
		if _, err := w.Write(resp.Header.Header()); err != nil {
			return
		}
		_, _ = io.Copy(w, resp.BodyStream())
	})
}

// deadlineWriter bounds each write by the server's write timeout, which fasthttp does not apply
// to a connection it has handed over.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			return 0, err
		}
	}
	return w.c.Write(p)
}
