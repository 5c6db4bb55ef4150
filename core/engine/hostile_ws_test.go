package engine

import (
	"strings"
	"testing"
)

// TestHostileWebSocket: WebSocket handshakes and other upgrades against the hostile suite's
// recording backend. A malformed handshake is refused before anything is forwarded; an
// upstream that does not complete the handshake gets no tunnel, and nothing the client sent
// behind its handshake ever reaches it.
func TestHostileWebSocket(t *testing.T) {
	rec, addr := startHostile(t)
	const (
		host    = "Host: app.test\r\n"
		key     = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		version = "Sec-WebSocket-Version: 13\r\n"
		upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		hs      = "GET /ws HTTP/1.1\r\n" + host + upgrade + key + version + "\r\n"
		// A second request behind the handshake: were the connection taken for a tunnel on
		// a failed upgrade, it would reach the backend raw, past every filter.
		smuggled = "GET /admin HTTP/1.1\r\n" + host + "\r\n"
		// 101 with an Accept that does not answer the key: the backend did not read the
		// handshake as a WebSocket one.
		badAccept = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
		noAccept = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	)
	runHostile(t, rec, addr, []hostileCase{
		// The upstream refuses the upgrade: its answer is relayed, and the client's connection
		// ends with it.
		{name: "ws upstream answers 200", req: hs, wantStatus: 200, wantClose: true, golden: "ws_handshake"},
		{name: "ws upstream answers 200, request smuggled behind", req: hs + smuggled, wantStatus: 200, wantClose: true, golden: "ws_handshake"},
		{name: "ws upstream answers 426", req: hs, wantStatus: 426, wantClose: true, golden: "ws_handshake",
			answer: "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno"},
		{name: "ws upstream 101 with a wrong accept", req: hs + smuggled, wantStatus: 502, wantClose: true, golden: "ws_handshake",
			answer: badAccept},
		{name: "ws upstream 101 without accept", req: hs, wantStatus: 502, wantClose: true, golden: "ws_handshake",
			answer: noAccept},
		{name: "ws upstream 101 for another protocol", req: hs, wantStatus: 502, wantClose: true, golden: "ws_handshake",
			answer: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"},
		// A filter that answers ends the handshake: nothing is forwarded.
		{name: "ws handshake answered by a filter", req: "GET /admin HTTP/1.1\r\n" + host + upgrade + key + version + "\r\n", wantStatus: 403, wantClose: true},

		// Malformed handshakes: 400 (426 for another version), nothing forwarded.
		{name: "ws on POST with a body", req: "POST /ws HTTP/1.1\r\n" + host + upgrade + key + version + "Content-Length: 5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "ws GET with a body", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + key + version + "Content-Length: 5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "ws GET with a chunked body", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + key + version + "Transfer-Encoding: chunked\r\n\r\n" + chunked("hello"), wantStatus: 400, wantClose: true},
		{name: "ws missing key", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + version + "\r\n", wantStatus: 400, wantClose: true},
		{name: "ws key not 16 bytes", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + "Sec-WebSocket-Key: c2hvcnQ=\r\n" + version + "\r\n", wantStatus: 400, wantClose: true},
		{name: "ws two keys", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + key + key + version + "\r\n", wantStatus: 400, wantClose: true},
		{name: "ws wrong version", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + key + "Sec-WebSocket-Version: 8\r\n\r\n", wantStatus: 426, wantClose: true},
		{name: "ws missing version", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + key + "\r\n", wantStatus: 400, wantClose: true},
		{name: "ws upgrade without connection upgrade", req: "GET /ws HTTP/1.1\r\n" + host + "Upgrade: websocket\r\n" + key + version + "\r\n", wantStatus: 400, wantClose: true},
		{name: "ws oversized handshake header", req: "GET /ws HTTP/1.1\r\n" + host + upgrade + key + version +
			"Sec-WebSocket-Protocol: " + strings.Repeat("a", 5000) + "\r\n\r\n", wantStatus: 431, wantClose: true},

		// Other upgrades: h2c is ignored (served as HTTP/1.1, HTTP2-Settings dropped as the
		// Connection field names it); any other protocol is refused by name.
		{name: "h2c ignored", req: "GET /x HTTP/1.1\r\n" + host + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
			wantStatus: 200, golden: "plain_get"},
		{name: "other upgrade refused", req: "GET /x HTTP/1.1\r\n" + host + "Connection: Upgrade\r\nUpgrade: foo/2\r\n\r\n", wantStatus: 501, wantClose: true,
			wantBody: `{"error":"upgrade to \"foo/2\" is not supported (only websocket)","status":501,"protocol":"foo/2"}` + "\n"},
		{name: "TLS upgrade refused", req: "GET /x HTTP/1.1\r\n" + host + "Connection: Upgrade\r\nUpgrade: TLS/1.0\r\n\r\n", wantStatus: 501, wantClose: true},
		// RFC 9110 section 7.8: an HTTP/1.0 request's Upgrade is ignored.
		{name: "ws on HTTP/1.0 ignored", req: "GET /x HTTP/1.0\r\n" + host + upgrade + key + version + "\r\n", wantStatus: 200, wantClose: true, golden: "ws_http10"},
	})
}
