package router

import "errors"

// Errors of NormalizePath. They are sentinels, so that rejecting a hostile request allocates
// nothing; callers test them with errors.Is.
var (
	ErrPathNotAbsolute = errors.New("path does not start with /")
	ErrPathBadByte     = errors.New("path holds a control byte, space, backslash or #")
	ErrPathBadEscape   = errors.New("path holds a malformed percent-escape")
	ErrPathEncodedSep  = errors.New("path holds an encoded / or \\")
	ErrPathEncodedCtl  = errors.New("path holds an encoded control byte")
)

// The normal form of a request path, which routes are matched on and which is forwarded
// upstream (see NormalizePath).
const (
	pPlain  = iota // kept as is
	pEscape        // '%': starts a percent-escape
	pEncode        // allowed by clients in practice but not by RFC 3986: written as %XX
	pReject        // never valid in a path: the request is refused
)

// pathClass classifies each byte of a raw path. RFC 3986 pchar and "/" are plain; bytes that
// clients send unescaped although the RFC does not allow them (non-ASCII, `"<>[]^{|}) are
// escaped so that "/café" and "/caf%C3%A9" have one form; control bytes, space, "\" (which
// some servers read as "/") and "#" (a fragment never belongs in a request) are refused.
var pathClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		t[c] = pEncode
	}
	for c := 0; c <= ' '; c++ {
		t[c] = pReject
	}
	t[0x7f], t['\\'], t['#'], t['?'] = pReject, pReject, pReject, pReject
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/" {
		t[c] = pPlain
	}
	t['%'] = pEscape
	return t
}()

// unreserved is RFC 3986's unreserved set: an escape of one of these means the byte itself.
var unreserved = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~" {
		t[c] = true
	}
	return t
}()

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// NormalizePath appends the normal form of the raw request path raw (the request-target up to
// "?", exactly as received) to dst. It is the one policy of the gateway: the router matches
// this form, filters and plugins see it, the upstream receives it and the access log reports
// it, so no two of them can disagree about which resource was asked for.
//
// The normal form, in the order applied:
//   - Percent-escapes of unreserved bytes (letters, digits, "-", ".", "_", "~") are decoded:
//     "/%61dmin" is "/admin". Every other escape stays encoded with upper-case hex digits
//     ("%3f" becomes "%3F"), because decoding a reserved byte can change what an upstream
//     reads ("%3F" is part of a name, "?" starts the query).
//   - Bytes that RFC 3986 does not allow unescaped in a path but clients send anyway
//     (non-ASCII, `"<>[]^{|}) are escaped, so both spellings of one path are one path.
//   - Repeated slashes are merged: "//admin" is "/admin".
//   - Dot segments are removed (RFC 3986 section 5.2.4), also when written as escapes
//     ("%2e%2e"); ".." at the root stays at the root.
//
// A path that cannot be normalised without changing its meaning for some upstream is refused
// with an error: an encoded "/" or "\" (%2F, %5C: one upstream decodes them into separators,
// another does not), an encoded control byte (%00 to %1F, %7F), a malformed escape, or a raw
// control byte, space, "\" or "#". Letter case is kept: paths are case-sensitive.
//
// The result is never longer than 3*len(raw). It allocates nothing when dst has the capacity.
func NormalizePath(dst, raw []byte) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, ErrPathNotAbsolute
	}
	base := len(dst)
	dst = append(dst, '/')
	segStart := len(dst) // where the current segment's output begins
	for i := 1; ; i++ {
		if i == len(raw) || raw[i] == '/' {
			seg := dst[segStart:]
			switch {
			case len(seg) == 1 && seg[0] == '.':
				dst = dst[:segStart]
			case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
				dst = dst[:segStart]
				if len(dst)-base > 1 {
					// Drop the previous segment, keeping the slash before it.
					j := len(dst) - 2
					for dst[j] != '/' {
						j--
					}
					dst = dst[:j+1]
				}
			case len(seg) == 0:
				// An empty segment: a repeated slash, or the trailing one, already written.
			default:
				if i < len(raw) {
					dst = append(dst, '/')
				}
			}
			if i == len(raw) {
				return dst, nil
			}
			segStart = len(dst)
			continue
		}
		c := raw[i]
		switch pathClass[c] {
		case pPlain:
			dst = append(dst, c)
		case pEscape:
			if i+2 >= len(raw) {
				return dst[:base], ErrPathBadEscape
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return dst[:base], ErrPathBadEscape
			}
			i += 2
			v := hi<<4 | lo
			switch {
			case unreserved[v]:
				dst = append(dst, v)
			case v == '/' || v == '\\':
				return dst[:base], ErrPathEncodedSep
			case v < ' ' || v == 0x7f:
				return dst[:base], ErrPathEncodedCtl
			default:
				dst = append(dst, '%', upperHex[v>>4], upperHex[v&15])
			}
		case pEncode:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		default:
			return dst[:base], ErrPathBadByte
		}
	}
}
