// Package httpcheck validates header names and values written in filter configs. Filters may not
// import each other, so the checks they share live here, run once at config build.
package httpcheck

import (
	"fmt"
	"net/textproto"
)

// managed are headers whose values belong to the proxy: they frame the message or describe one
// hop, so a filter changing them would corrupt the connection rather than edit the request.
var managed = map[string]bool{
	"Connection":        true,
	"Content-Length":    true,
	"Keep-Alive":        true,
	"Proxy-Connection":  true,
	"Te":                true,
	"Trailer":           true,
	"Transfer-Encoding": true,
	"Upgrade":           true,
}

// Managed reports whether the canonical header name belongs to the proxy.
func Managed(canon string) bool { return managed[canon] }

// Name validates n as an RFC 9110 token and returns its canonical spelling.
func Name(n string) (string, error) {
	if n == "" {
		return "", fmt.Errorf("empty header name")
	}
	for i := 0; i < len(n); i++ {
		if !tokenChar(n[i]) {
			return "", fmt.Errorf("invalid header name %q: byte %q is not allowed in a token", n, n[i])
		}
	}
	return textproto.CanonicalMIMEHeaderKey(n), nil
}

// EditableName is Name, refusing the headers the proxy manages.
func EditableName(n string) (string, error) {
	canon, err := Name(n)
	if err == nil && managed[canon] {
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

// tokenChar reports whether c may appear in an RFC 9110 token (tchar).
func tokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
