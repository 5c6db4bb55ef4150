package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkStripResponse is the hop-by-hop clean-up of an upstream response header as the pool
// reads it (names as the upstream spelled them): a typical answer with no hop-by-hop field,
// and one with a Connection field naming another.
func BenchmarkStripResponse(b *testing.B) {
	for _, tc := range []struct{ name, head string }{
		{"none", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nDate: Mon, 07 Dec 2026 18:00:00 GMT\r\nServer: app\r\nCache-Control: no-store\r\nX-Request-Id: abc\r\n\r\n"},
		{"connection", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nconnection: x-secret\r\nx-secret: s\r\nKeep-Alive: timeout=5\r\n\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var src fasthttp.ResponseHeader
			src.DisableNormalizing()
			if err := src.Read(bufio.NewReader(strings.NewReader(tc.head))); err != nil {
				b.Fatal(err)
			}
			u := &Upstream{}
			var h fasthttp.ResponseHeader
			b.ReportAllocs()
			for b.Loop() {
				src.CopyTo(&h)
				u.stripResponse(&h)
			}
		})
	}
}
