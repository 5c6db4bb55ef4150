package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
)

const canary = "GET /canary HTTP/1.1\r\nHost: example.com\r\n\r\n"

// TestFramingEndToEnd sends every ambiguous framing over raw TCP through the gateway stand-in.
// Whether fasthttp refuses the request itself or CheckFraming does, the client must get 400 and a
// closed connection, and the backend must not receive a complete request.
func TestFramingEndToEnd(t *testing.T) {
	be := newRawBackend(t, replyOK)
	u := newUpstream(t, Options{Targets: []string{be.addr()}})
	gw := gateway(t, nil, u.Forward)

	const h = "POST / HTTP/1.1\r\nHost: example.com\r\n"
	tests := []struct{ name, raw string }{
		{"cl and te", h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"te and cl", h + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"duplicate cl equal", h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
		{"duplicate cl differ", h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"cl list", h + "Content-Length: 5, 5\r\n\r\nhello"},
		{"cl non-numeric", h + "Content-Length: abc\r\n\r\n"},
		{"cl plus", h + "Content-Length: +5\r\n\r\nhello"},
		{"cl minus", h + "Content-Length: -5\r\n\r\nhello"},
		{"cl inner space", h + "Content-Length: 5 0\r\n\r\nhello"},
		{"cl two spaces", h + "Content-Length:  5\r\n\r\nhello"},
		{"cl tab", h + "Content-Length:\t5\r\n\r\nhello"},
		{"cl trailing space", h + "Content-Length: 5 \r\n\r\nhello"},
		{"cl hex", h + "Content-Length: 0x5\r\n\r\nhello"},
		{"te chunked identity", h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{"te identity", h + "Transfer-Encoding: identity\r\n\r\n"},
		{"te xchunked", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"te two spaces", h + "Transfer-Encoding:  chunked\r\n\r\n0\r\n\r\n"},
		{"te tab", h + "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n"},
		{"te trailing space", h + "Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n"},
		{"te duplicate", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"te on http/1.0", "POST / HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"space in name", h + "X Foo: bar\r\nContent-Length: 0\r\n\r\n"},
		{"non-token name", h + "X(Foo): bar\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold", h + "X-Foo: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold tab", h + "X-Foo: a\r\n\tTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"},
		{"leading space first field", "POST / HTTP/1.1\r\n Host: example.com\r\nContent-Length: 0\r\n\r\n"},
		{"nul in value", h + "X-Foo: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		{"bare cr in value", h + "X-Foo: a\rb\r\nContent-Length: 0\r\n\r\n"},
		{"bare lf line end", h + "X-Foo: a\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"},
		{"bad chunk size", h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{"chunk size overflow", h + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{"chunk size bad ext", h + "Transfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n"},
		{"chunk missing crlf", h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := rawExchange(t, gw, tc.raw)
			if got, want := resp.StatusCode(), fasthttp.StatusBadRequest; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if !closed {
				t.Errorf("connection left open after rejecting %q", tc.raw)
			}
			if got, n := be.received(); n != 0 {
				t.Errorf("backend parsed %d complete requests: %q", n, got)
			}
			resp, _ = rawExchangeClose(t, gw, canary, false)
			if got, want := resp.StatusCode(), fasthttp.StatusOK; got != want {
				t.Errorf("canary status = %d, want %d", got, want)
			}
			// Drop the canary from the record so the next case starts clean.
			be.mu.Lock()
			be.complete = 0
			be.got.Reset()
			be.mu.Unlock()
		})
	}
}
