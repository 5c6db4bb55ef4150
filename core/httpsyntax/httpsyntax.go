// Package httpsyntax holds the HTTP/1.1 syntax rules that several layers check: the token
// alphabet of methods and field names (RFC 9110 section 5.6.2), the bytes a field value may
// hold, ASCII case-insensitive comparison, comma-separated lists, and the fields that belong
// to the connection rather than to the message. One copy keeps the edge, the proxy, the
// router, config validation, filters and plugins from disagreeing about what a valid name is.
//
// It imports only the standard library, so config (which imports nothing else of the gateway)
// may use it too. Everything here allocates nothing.
package httpsyntax

// tchar is the token alphabet.
var tchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// IsTokenByte reports whether c belongs to the token alphabet.
func IsTokenByte(c byte) bool { return tchar[c] }

// IsToken reports whether s is a token: the syntax of methods and field names.
func IsToken[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// IsValueByte reports whether c may appear in a field value: any byte but CR, LF, NUL, the
// other control bytes (HTAB excepted) and DEL. Obsolete text (0x80 and up) is allowed, as
// RFC 9110 section 5.5 does.
func IsValueByte(c byte) bool { return c >= 0x20 && c != 0x7f || c == '\t' }

// BadValueByte returns the index of the first byte of v that may not appear in a field
// value, or -1.
func BadValueByte[T ~string | ~[]byte](v T) int {
	for i := 0; i < len(v); i++ {
		if !IsValueByte(v[i]) {
			return i
		}
	}
	return -1
}

// EqualFold reports whether a and b are equal ignoring ASCII case, which is how field names
// and most protocol tokens compare (Unicode folding would let "K" (Kelvin) match "k").
func EqualFold[A ~string | ~[]byte, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// TrimOWS removes optional whitespace (spaces and tabs) around b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// NextElement splits the first element off a comma-separated list (Connection, TE, ...),
// without its surrounding whitespace, and returns it with the rest of the list. Empty
// elements come back empty; callers skip them.
func NextElement(list []byte) (elem, rest []byte) {
	for i, c := range list {
		if c == ',' {
			return TrimOWS(list[:i]), list[i+1:]
		}
	}
	return TrimOWS(list), nil
}

// HopByHop are the fields that describe one connection, not the message: a proxy removes them
// (and every field Connection names) before forwarding, and never lets a filter or a plugin
// set them. RFC 9110 section 7.6.1 names Connection, Proxy-Connection, Keep-Alive, TE,
// Transfer-Encoding and Upgrade; Trailer announces fields of a chunked body the proxy
// re-frames, and Proxy-Authenticate and Proxy-Authorization are for the proxy itself.
var HopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// IsHopByHop reports whether name (any case) is one of HopByHop.
func IsHopByHop[T ~string | ~[]byte](name T) bool {
	for _, h := range HopByHop {
		if EqualFold(name, h) {
			return true
		}
	}
	return false
}

// IsFraming reports whether name (any case) is a field the proxy owns when it frames the
// message it sends: Content-Length, or a hop-by-hop field that manages the connection. A filter
// or a plugin that set one would corrupt the connection rather than edit the message.
// Proxy-Authorization and Proxy-Authenticate are hop-by-hop too, but carry credentials rather
// than framing: a filter may set them for an upstream that is itself a forward proxy.
func IsFraming[T ~string | ~[]byte](name T) bool {
	return EqualFold(name, "Content-Length") ||
		IsHopByHop(name) && !EqualFold(name, "Proxy-Authorization") && !EqualFold(name, "Proxy-Authenticate")
}

// ConnectionMayRemove reports whether a field that a Connection header names may be removed
// as hop-by-hop: any field but Host, Content-Length and Transfer-Encoding. The gateway framed
// the body and routed on the host from those, and letting a sender delete them would make
// what the next hop sees disagree with what the gateway checked.
func ConnectionMayRemove(name []byte) bool {
	return !EqualFold(name, "host") && !EqualFold(name, "content-length") && !EqualFold(name, "transfer-encoding")
}
