package proxy

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// echoMaxFrame bounds a frame the demo upstream echoes; a larger one ends its WebSocket.
const echoMaxFrame = 1 << 20

// EchoWebSocket is the demo upstream's answer to a WebSocket handshake: it accepts it and
// echoes every message back, answers pings, and returns a close frame for a close frame. The
// returned connection is the tunnel's upstream side, served in-process.
func EchoWebSocket(c *filter.Ctx) net.Conn {
	c.Upstream = "echo"
	accept := httpsyntax.WebSocketAccept(c.Request.Header.Peek("Sec-WebSocket-Key"))
	c.Response.Reset()
	c.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	c.Response.Header.Set("Upgrade", "websocket")
	c.Response.Header.Set("Connection", "Upgrade")
	c.Response.Header.Set("Sec-WebSocket-Accept", accept)
	c.Response.Header.Set("X-Upstream", "echo")
	gw, echo := net.Pipe()
	go echoFrames(echo)
	return gw
}

// echoFrames reads a client's frames (masked, RFC 6455 section 5.3) and writes each back
// unmasked, as a server's frames are.
func echoFrames(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var hdr [14]byte
	for {
		if _, err := io.ReadFull(br, hdr[:2]); err != nil {
			return
		}
		need := frameHeaderLen(hdr[1])
		if hdr[1]&0x80 == 0 {
			return // an unmasked client frame is a protocol error
		}
		if _, err := io.ReadFull(br, hdr[2:need]); err != nil {
			return
		}
		n := framePayloadLen(hdr[:need])
		if n > echoMaxFrame {
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		key := hdr[need-4 : need]
		for i := range payload {
			payload[i] ^= key[i%4]
		}
		b0 := hdr[0]
		switch b0 & 0x0f {
		case 0x9: // ping: pong with the same payload
			b0 = 0x8a
		case 0xa: // pong
			continue
		}
		if _, err := conn.Write(appendFrame(nil, b0, payload)); err != nil || b0&0x0f == 0x8 {
			return // after a close frame, the server closes
		}
	}
}

// appendFrame appends an unmasked frame whose first byte is b0.
func appendFrame(dst []byte, b0 byte, payload []byte) []byte {
	dst = append(dst, b0)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n <= 0xffff:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}
