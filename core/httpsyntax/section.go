package httpsyntax

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header section errors. CheckHeaderSection wraps them with the offending field, so callers
// test with errors.Is.
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
)

// valueStop marks the bytes that end or invalidate a field value: CR, LF, and every other
// control byte but HTAB.
var valueStop = func() (t [256]bool) {
	for c := 0; c < ' '; c++ {
		t[c] = c != '\t'
	}
	t[0x7f] = true
	return t
}()

// valueEnd returns the index of the first byte of b from k on that valueStop marks, or len(b).
// Values are most of a header section's bytes, so eight are tested at a time while none is a
// control byte or DEL (the word tests below are exact); a word that holds one (the CR ending
// the value, or an HTAB, which is allowed) is finished byte by byte.
func valueEnd(b []byte, k int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for k+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[k:])
		del := x ^ (0x7f * ones)
		if (x-0x20*ones)&^x&highs|(del-ones)&^del&highs != 0 {
			break // a byte below 0x20, or a DEL
		}
		k += 8
	}
	for k < len(b) && !valueStop[b[k]] {
		k++
	}
	return k
}

// CheckHeaderSection validates a raw header section (field lines up to and including the
// empty line) exactly as it arrived, for a request or a response, and counts its Host fields.
// fasthttp normalizes, folds or resolves much of what matters before the parsed header is
// visible, so the checks that keep two parsers from reading one message two ways run here:
// field names are tokens with no whitespace before the colon, values hold no bare CR or LF
// and no control byte but HTAB, no line is folded, and Content-Length and Transfer-Encoding
// appear at most once, never together, and in the one form every mainstream client writes
// ("Name: value" with at most one space after the colon and nothing after the value: RFC 9110
// allows more optional whitespace, but the extra forms are exactly the ones used to make two
// parsers disagree). Transfer-Encoding must be chunked, and HTTP/1.0 may not use it.
// It allocates nothing on success.
func CheckHeaderSection(raw []byte, http11 bool) (hosts int, err error) {
	var nCL, nTE int
	i := 0
	for i < len(raw) {
		c := raw[i]
		if c == '\r' {
			if i+1 < len(raw) && raw[i+1] == '\n' {
				break // the empty line ends the section
			}
			return hosts, ErrBadLineEnding
		}
		if c == ' ' || c == '\t' {
			return hosts, ErrObsFold
		}
		if c == '\n' {
			return hosts, ErrBadLineEnding
		}
		// Field name: tokens only, up to the colon; no whitespace before the colon.
		j := i
		for j < len(raw) && raw[j] != ':' {
			if !IsTokenByte(raw[j]) {
				return hosts, fmt.Errorf("field name %q: %w", clip(raw[i:j+1]), ErrBadFieldName)
			}
			j++
		}
		if j == len(raw) {
			return hosts, ErrTruncatedHeaderSec
		}
		if j == i {
			return hosts, fmt.Errorf("empty field name: %w", ErrBadFieldName)
		}
		name := raw[i:j]
		// Field value: up to CRLF; NUL, bare CR and bare LF are never allowed. The table lookup
		// keeps the common case, a run of plain bytes, to one load and branch per byte.
		k := j + 1
		for {
			k = valueEnd(raw, k)
			if k >= len(raw) {
				return hosts, ErrTruncatedHeaderSec
			}
			v := raw[k]
			if v == '\r' {
				if k+1 < len(raw) && raw[k+1] == '\n' {
					break
				}
				return hosts, fmt.Errorf("field %q: bare CR: %w", clip(name), ErrBadFieldValue)
			}
			if v == '\n' {
				return hosts, fmt.Errorf("field %q: bare LF: %w", clip(name), ErrBadLineEnding)
			}
			return hosts, fmt.Errorf("field %q: control byte %#x: %w", clip(name), v, ErrBadFieldValue)
		}
		value := raw[j+1 : k]
		switch {
		case EqualFold(name, "content-length"):
			nCL++
			if nCL > 1 {
				return hosts, ErrDuplicateLength
			}
			if !strictDigits(value) {
				return hosts, fmt.Errorf("value %q: %w", clip(value), ErrBadContentLength)
			}
		case EqualFold(name, "host"):
			hosts++
		case EqualFold(name, "transfer-encoding"):
			nTE++
			if nTE > 1 {
				return hosts, ErrDuplicateEncoding
			}
			if !strictChunked(value) {
				return hosts, fmt.Errorf("value %q: %w", clip(value), ErrBadTransferCoding)
			}
		}
		i = k + 2
	}
	if nTE > 0 {
		if nCL > 0 {
			return hosts, ErrLengthAndEncoding
		}
		if !http11 {
			return hosts, ErrEncodingOnHTTP10
		}
	}
	return hosts, nil
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
	return EqualFold(v, "chunked")
}

// clip bounds how much of an attacker-supplied field ends up in an error (and thus a log line).
func clip(b []byte) []byte {
	const max = 64
	if len(b) > max {
		return b[:max]
	}
	return b
}
