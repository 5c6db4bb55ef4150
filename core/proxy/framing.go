package proxy

import (
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"
)

// Framing errors. CheckFraming wraps them with the offending field, so callers test with errors.Is.
var (
	ErrObsFold            = errors.New("obsolete line folding in header section")
	ErrBadFieldName       = errors.New("invalid byte in header field name")
	ErrBadFieldValue      = errors.New("invalid byte in header field value")
	ErrBadLineEnding      = errors.New("header line not terminated by CRLF")
	ErrDuplicateLength    = errors.New("duplicate content-length")
	ErrBadContentLength   = errors.New("invalid content-length")
	ErrDuplicateEncoding  = errors.New("duplicate transfer-encoding")
	ErrBadTransferCoding  = errors.New("transfer-encoding other than chunked")
	ErrLengthAndEncoding  = errors.New("content-length together with transfer-encoding")
	ErrEncodingOnHTTP10   = errors.New("transfer-encoding on http/1.0")
	ErrTruncatedHeaderSec = errors.New("truncated header section")
	ErrDuplicateHost      = errors.New("more than one host field")
)

// tchar is RFC 9110's token alphabet: the only bytes a field name may contain.
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

// valueStop marks the bytes that end or invalidate a field value: CR, LF, and every other
// control byte but HTAB.
var valueStop = func() (t [256]bool) {
	for c := 0; c < ' '; c++ {
		t[c] = c != '\t'
	}
	t[0x7f] = true
	return t
}()

// CheckFraming rejects a request whose framing is ambiguous, working on the header bytes exactly
// as they arrived (RawHeaders), because fasthttp has already normalized, folded or resolved much
// of what matters by the time the parsed header is visible. It allocates nothing on success.
//
// The framing fields are held to the form every mainstream client writes, "Name: value" with
// at most one space after the colon and nothing after the value: RFC 9110 allows more optional
// whitespace, but the extra forms are exactly the ones used to make two parsers disagree.
//
// A request with more than one Host field is refused as well (RFC 9112 section 3.2): fasthttp
// keeps one of them, and an upstream may read the other.
func CheckFraming(ctx *fasthttp.RequestCtx) error {
	nHost, err := scanRaw(ctx.Request.Header.RawHeaders(), ctx.Request.Header.IsHTTP11())
	if err == nil && nHost > 1 {
		err = ErrDuplicateHost
	}
	return err
}

// checkRaw validates a raw header section (field lines up to and including the empty line).
// It is shared with the upstream response check.
func checkRaw(raw []byte, http11 bool) error {
	_, err := scanRaw(raw, http11)
	return err
}

// scanRaw is checkRaw that also counts the Host fields.
func scanRaw(raw []byte, http11 bool) (nHost int, err error) {
	var nCL, nTE int
	i := 0
	for i < len(raw) {
		c := raw[i]
		if c == '\r' {
			if i+1 < len(raw) && raw[i+1] == '\n' {
				break // the empty line ends the section
			}
			return nHost, ErrBadLineEnding
		}
		if c == ' ' || c == '\t' {
			return nHost, ErrObsFold
		}
		if c == '\n' {
			return nHost, ErrBadLineEnding
		}
		// Field name: tokens only, up to the colon; no whitespace before the colon.
		j := i
		for j < len(raw) && raw[j] != ':' {
			if !tchar[raw[j]] {
				return nHost, fmt.Errorf("field name %q: %w", clip(raw[i:j+1]), ErrBadFieldName)
			}
			j++
		}
		if j == len(raw) {
			return nHost, ErrTruncatedHeaderSec
		}
		if j == i {
			return nHost, fmt.Errorf("empty field name: %w", ErrBadFieldName)
		}
		name := raw[i:j]
		// Field value: up to CRLF; NUL, bare CR and bare LF are never allowed. The table lookup
		// keeps the common case, a run of plain bytes, to one load and branch per byte.
		k := j + 1
		for {
			for k < len(raw) && !valueStop[raw[k]] {
				k++
			}
			if k >= len(raw) {
				return nHost, ErrTruncatedHeaderSec
			}
			v := raw[k]
			if v == '\r' {
				if k+1 < len(raw) && raw[k+1] == '\n' {
					break
				}
				return nHost, fmt.Errorf("field %q: bare CR: %w", clip(name), ErrBadFieldValue)
			}
			if v == '\n' {
				return nHost, fmt.Errorf("field %q: bare LF: %w", clip(name), ErrBadLineEnding)
			}
			return nHost, fmt.Errorf("field %q: control byte %#x: %w", clip(name), v, ErrBadFieldValue)
		}
		value := raw[j+1 : k]
		switch {
		case equalFold(name, "content-length"):
			nCL++
			if nCL > 1 {
				return nHost, ErrDuplicateLength
			}
			if !strictDigits(value) {
				return nHost, fmt.Errorf("value %q: %w", clip(value), ErrBadContentLength)
			}
		case equalFold(name, "host"):
			nHost++
		case equalFold(name, "transfer-encoding"):
			nTE++
			if nTE > 1 {
				return nHost, ErrDuplicateEncoding
			}
			if !strictChunked(value) {
				return nHost, fmt.Errorf("value %q: %w", clip(value), ErrBadTransferCoding)
			}
		}
		i = k + 2
	}
	if nTE > 0 {
		if nCL > 0 {
			return nHost, ErrLengthAndEncoding
		}
		if !http11 {
			return nHost, ErrEncodingOnHTTP10
		}
	}
	return nHost, nil
}

// strictDigits accepts an optional single space, then 1 to 18 decimal digits, then nothing:
// no sign, no inner or trailing whitespace, no list ("5, 5"), and small enough to never overflow.
func strictDigits(v []byte) bool {
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 18 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// strictChunked accepts an optional single space followed by "chunked" in any letter case.
func strictChunked(v []byte) bool {
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return equalFold(v, "chunked")
}

// equalFold compares b with the lower-case ASCII string s, ignoring the case of b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// clip bounds how much of an attacker-supplied field ends up in an error (and thus a log line).
func clip(b []byte) []byte {
	const max = 64
	if len(b) > max {
		return b[:max]
	}
	return b
}
