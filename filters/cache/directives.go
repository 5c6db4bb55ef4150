package cache

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// maxDelta caps every delta-seconds value: RFC 9111 §1.2.2 says a larger value is taken as
// 2^31 seconds, and capping keeps the arithmetic far from overflow.
const maxDelta = 1<<31 - 1

// directives holds the Cache-Control directives the cache acts on, from every Cache-Control
// field line of a request or a response. A duration is -1 when the directive is absent.
type directives struct {
	noStore, noCache, private, public   bool
	mustRevalidate, proxyRevalidate     bool
	onlyIfCached                        bool
	maxAge, sMaxAge, minFresh, maxStale time.Duration
	staleWhileRevalidate, staleIfError  time.Duration
	maxStaleAny                         bool // max-stale without a value: any staleness
	present                             bool // some Cache-Control field was there
}

func (d *directives) reset() {
	*d = directives{maxAge: -1, sMaxAge: -1, minFresh: -1, maxStale: -1, staleWhileRevalidate: -1, staleIfError: -1}
}

// parseCacheControl reads every Cache-Control field line. Directive names are
// case-insensitive; an unknown directive is ignored (RFC 9111 §5.2.3). A directive given twice
// with different values keeps the most conservative reading: the smallest duration.
func parseCacheControl(d *directives, values [][]byte) {
	d.reset()
	for _, v := range values {
		d.present = true
		for rest := v; len(rest) > 0; {
			var elem []byte
			elem, rest = httpsyntax.NextElement(rest)
			name, arg, hasArg := cutDirective(elem)
			switch {
			case httpsyntax.EqualFold(name, "no-store"):
				d.noStore = true
			case httpsyntax.EqualFold(name, "no-cache"):
				// The qualified form (no-cache="Set-Cookie") is read as the unqualified one:
				// stricter, and never wrong.
				d.noCache = true
			case httpsyntax.EqualFold(name, "private"):
				d.private = true
			case httpsyntax.EqualFold(name, "public"):
				d.public = true
			case httpsyntax.EqualFold(name, "must-revalidate"):
				d.mustRevalidate = true
			case httpsyntax.EqualFold(name, "proxy-revalidate"):
				d.proxyRevalidate = true
			case httpsyntax.EqualFold(name, "only-if-cached"):
				d.onlyIfCached = true
			case httpsyntax.EqualFold(name, "max-age"):
				setDelta(&d.maxAge, arg, hasArg)
			case httpsyntax.EqualFold(name, "s-maxage"):
				setDelta(&d.sMaxAge, arg, hasArg)
			case httpsyntax.EqualFold(name, "min-fresh"):
				setDelta(&d.minFresh, arg, hasArg)
			case httpsyntax.EqualFold(name, "max-stale"):
				if !hasArg {
					d.maxStaleAny = true
				} else {
					setDelta(&d.maxStale, arg, hasArg)
				}
			case httpsyntax.EqualFold(name, "stale-while-revalidate"):
				setDelta(&d.staleWhileRevalidate, arg, hasArg)
			case httpsyntax.EqualFold(name, "stale-if-error"):
				setDelta(&d.staleIfError, arg, hasArg)
			}
		}
	}
}

// cutDirective splits `name=value` or `name="value"`.
func cutDirective(e []byte) (name, arg []byte, ok bool) {
	for i, b := range e {
		if b == '=' {
			name, arg = httpsyntax.TrimOWS(e[:i]), httpsyntax.TrimOWS(e[i+1:])
			if len(arg) >= 2 && arg[0] == '"' && arg[len(arg)-1] == '"' {
				arg = arg[1 : len(arg)-1]
			}
			return name, arg, true
		}
	}
	return httpsyntax.TrimOWS(e), nil, false
}

// setDelta parses delta-seconds (digits only). An invalid value makes the directive count as
// zero seconds, the conservative reading (RFC 9111 §4.2.1: an invalid max-age is stale).
func setDelta(dst *time.Duration, arg []byte, ok bool) {
	n := int64(0)
	valid := ok && len(arg) > 0
	for _, b := range arg {
		if b < '0' || b > '9' {
			valid = false
			break
		}
		if n < maxDelta {
			n = n*10 + int64(b-'0')
		}
	}
	if n > maxDelta {
		n = maxDelta
	}
	if !valid {
		n = 0
	}
	v := time.Duration(n) * time.Second
	if *dst < 0 || v < *dst {
		*dst = v
	}
}

// parseAge parses an Age value (delta-seconds); ok is false when it is absent or invalid.
func parseAge(v []byte) (time.Duration, bool) {
	v = httpsyntax.TrimOWS(v)
	if len(v) == 0 {
		return 0, false
	}
	n := int64(0)
	for _, b := range v {
		if b < '0' || b > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(b-'0')
		}
	}
	return time.Duration(min(n, maxDelta)) * time.Second, true
}

// parseHTTPDate parses an HTTP-date; ok is false for an invalid one (an invalid Expires means
// already expired, RFC 9111 §5.3).
func parseHTTPDate(v []byte) (time.Time, bool) {
	if len(v) == 0 {
		return time.Time{}, false
	}
	t, err := fasthttp.ParseHTTPDate(v)
	return t, err == nil
}
