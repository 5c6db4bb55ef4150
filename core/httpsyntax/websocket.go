package httpsyntax

import (
	"crypto/sha1" //nolint:gosec // RFC 6455 fixes SHA-1 for the handshake; it proves nothing secret
	"encoding/base64"
)

// websocketGUID is the fixed string RFC 6455 section 1.3 appends to the client's key.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// WebSocketAccept returns the Sec-WebSocket-Accept value that answers the Sec-WebSocket-Key
// key (RFC 6455 section 4.2.2): base64 of the SHA-1 of the key and the protocol's GUID. A
// server that sends it has read the handshake as a WebSocket one, which an upstream answering
// 101 by mistake has not.
func WebSocketAccept(key []byte) string {
	h := sha1.New() //nolint:gosec // see the import
	h.Write(key)
	h.Write([]byte(websocketGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// ValidWebSocketKey reports whether key is a Sec-WebSocket-Key RFC 6455 section 4.1 allows:
// base64 of exactly 16 bytes (24 characters, ending in "==").
func ValidWebSocketKey(key []byte) bool {
	if len(key) != 24 || key[22] != '=' || key[23] != '=' {
		return false
	}
	var b [18]byte
	n, err := base64.StdEncoding.Decode(b[:], key)
	return err == nil && n == 16
}

// HasElement reports whether the comma-separated list has an element equal to want, ignoring
// case (a Connection or Upgrade field value).
func HasElement(list []byte, want string) bool {
	for len(list) > 0 {
		var e []byte
		e, list = NextElement(list)
		if EqualFold(e, want) {
			return true
		}
	}
	return false
}
