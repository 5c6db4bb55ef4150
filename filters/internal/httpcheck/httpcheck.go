// Package httpcheck validates header names and values written in filter configs. Filters may not
// import each other, so the checks they share live here, run once at config build.
package httpcheck

import (
	"fmt"
	"net/textproto"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Name validates n as an RFC 9110 token and returns its canonical spelling.
func Name(n string) (string, error) {
	if n == "" {
		return "", fmt.Errorf("empty header name")
	}
	for i := 0; i < len(n); i++ {
		if !httpsyntax.IsTokenByte(n[i]) {
			return "", fmt.Errorf("invalid header name %q: byte %q is not allowed in a token", n, n[i])
		}
	}
	return textproto.CanonicalMIMEHeaderKey(n), nil
}

// EditableName is Name, refusing the headers the proxy manages.
func EditableName(n string) (string, error) {
	canon, err := Name(n)
	if err == nil && httpsyntax.IsFraming(canon) {
		err = fmt.Errorf("header %q is managed by the proxy (framing or hop-by-hop) and cannot be set by a filter", n)
	}
	return canon, err
}

// Value rejects bytes that would end the header line or the message early. The error never
// quotes the value: header values are often credentials (Authorization, Cookie, X-Api-Key),
// and the error reaches logs and the admin API. The byte's position says where to look.
func Value(v string) error {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\r' || c == '\n' || c == 0:
			return fmt.Errorf("value contains CR, LF or NUL (byte %d of %d)", i+1, len(v))
		case c < 0x20 && c != '\t', c == 0x7f:
			return fmt.Errorf("value contains control byte %#02x (byte %d of %d)", c, i+1, len(v))
		}
	}
	return nil
}
