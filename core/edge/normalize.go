package edge

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
	"github.com/weir-gateway/weir/core/router"
)

// Edge errors: each one answers 400. They are sentinels so that refusing a hostile request
// allocates nothing.
var (
	ErrBadMethod      = errors.New("method is not an upper-case token")
	ErrBadTarget      = errors.New("request-target is neither origin-form nor absolute-form")
	ErrTargetUserinfo = errors.New("request-target carries userinfo")
	ErrNoHost         = errors.New("missing or empty host")
	ErrHostUserinfo   = errors.New("host carries userinfo")
	ErrBadHost        = errors.New("malformed host")
	ErrBadPort        = errors.New("malformed port in host")
)

// Target is the request-target of a request that passed Edge, split into its parts.
type Target struct {
	// Path is the normal form of the path (router.NormalizePath); nil when PathErr is set.
	Path []byte
	// Raw is the path exactly as received. It aliases the request header, which Edge rewrote
	// to origin-form, so it stays valid until SetTarget changes the request-target.
	Raw []byte
	// Query is the query without its "?", as received; nil when there is none.
	Query []byte
	// HasQuery tells "/p?" from "/p".
	HasQuery bool
	// PathErr says why Raw has no normal form; the request may only go to a route that keeps
	// raw paths, and is refused with 400 otherwise.
	PathErr error
}

// Edge checks what every later step relies on, once per request and before routing: the
// method, the request-target and the Host. It computes the path's normal form into buf (see
// router.NormalizePath) and returns buf, grown if it had to be, for reuse. It allocates nothing
// once buf has grown to the paths a listener sees.
//
//   - The method must be an upper-case token: "delete" is refused rather than matched against
//     nothing and then upper-cased by an upstream (nginx refuses it likewise).
//   - The target must be origin-form ("/p?q") or absolute-form ("http://host/p?q"). An
//     absolute-form authority becomes the Host header (RFC 9112 section 3.2.2: it wins over
//     Host) and the target is rewritten to origin-form, so from here on the Host header is the
//     one host that is routed on, seen by filters and sent upstream. Userinfo in the authority
//     is refused: fasthttp would turn it into an Authorization header while writing upstream,
//     after every filter ran. A fragment ("#") is refused.
//   - The Host must be a valid host: letters, digits, "-", "_" and "." in non-empty labels
//     (one trailing dot allowed: "app.test." names the host "app.test"), or a bracketed IPv6
//     literal, then at most one ":port" of 1 to 5 digits up to 65535. Userinfo, a second port,
//     an empty port and every other byte are refused. HTTP/1.0 requests need a Host as well:
//     the gateway has nothing else to route or forward on.
func Edge(rc *fasthttp.RequestCtx, buf []byte) (Target, []byte, error) {
	h := &rc.Request.Header
	if !upperToken(h.Method()) {
		return Target{}, buf, ErrBadMethod
	}
	t := Target{}
	uri := h.RequestURI()
	if len(uri) == 0 || uri[0] != '/' {
		auth, rest, err := splitAbsolute(uri)
		if err != nil {
			return t, buf, err
		}
		if err := checkHost(auth); err != nil {
			return t, buf, err
		}
		// Copy before rewriting: auth and rest alias the header's own buffer.
		buf = append(buf[:0], auth...)
		n := len(buf)
		if len(rest) == 0 || rest[0] == '?' {
			buf = append(buf, '/')
		}
		buf = append(buf, rest...)
		h.SetHostBytes(buf[:n])
		rc.Request.SetRequestURIBytes(buf[n:])
		uri = h.RequestURI()
	} else if err := checkHost(h.Host()); err != nil {
		return t, buf, err
	}
	t.Raw = uri
	for i, c := range uri {
		if c == '?' {
			t.Raw, t.Query, t.HasQuery = uri[:i], uri[i+1:], true
			break
		}
	}
	// The query is forwarded as received, but never with a byte that ends or splits the
	// request line, nor a fragment.
	for _, c := range uri {
		if c <= ' ' || c == 0x7f || c == '#' {
			return t, buf, router.ErrPathBadByte
		}
	}
	var err error
	if buf, err = router.NormalizePath(buf[:0], t.Raw); err != nil {
		t.PathErr = err
	} else {
		t.Path = buf
	}
	return t, buf, nil
}

// SetTarget makes path (with the query of t) the request-target that filters, plugins and the
// upstream see. It is a no-op when the target already reads so. buf is scratch space that
// must not hold path; it is returned for reuse.
func SetTarget(rc *fasthttp.RequestCtx, t *Target, path, buf []byte) []byte {
	if string(path) == string(t.Raw) {
		return buf // the common case: the path was already in normal form
	}
	buf = append(buf[:0], path...)
	if t.HasQuery {
		buf = append(buf, '?')
		buf = append(buf, t.Query...)
	}
	rc.Request.SetRequestURIBytes(buf)
	return buf
}

// upperToken reports whether m is an RFC 9110 token without lower-case letters.
func upperToken(m []byte) bool {
	if len(m) == 0 {
		return false
	}
	for _, c := range m {
		if !httpsyntax.IsTokenByte(c) || 'a' <= c && c <= 'z' {
			return false
		}
	}
	return true
}

// splitAbsolute splits an absolute-form target "http://authority/rest" (scheme in any case).
func splitAbsolute(uri []byte) (auth, rest []byte, err error) {
	var n int
	switch {
	case len(uri) >= 7 && httpsyntax.EqualFold(uri[:7], "http://"):
		n = 7
	case len(uri) >= 8 && httpsyntax.EqualFold(uri[:8], "https://"):
		n = 8
	default:
		return nil, nil, ErrBadTarget
	}
	auth = uri[n:]
	for i, c := range auth {
		if c == '/' || c == '?' || c == '#' {
			auth, rest = auth[:i], auth[i:]
			break
		}
	}
	for _, c := range auth {
		if c == '@' {
			return nil, nil, ErrTargetUserinfo
		}
	}
	return auth, rest, nil
}

// hostByte is the alphabet of a registered name or IPv4 address in a Host.
var hostByte = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_." {
		t[c] = true
	}
	return t
}()

func checkHost(host []byte) error {
	if len(host) == 0 {
		return ErrNoHost
	}
	for _, c := range host {
		if c == '@' {
			return ErrHostUserinfo
		}
	}
	name := host
	var port []byte
	if host[0] == '[' {
		end := -1
		for i, c := range host {
			if c == ']' {
				end = i
				break
			}
		}
		if end < 2 {
			return ErrBadHost
		}
		for _, c := range host[1:end] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.') {
				return ErrBadHost
			}
		}
		name, port = nil, host[end+1:]
		if len(port) > 0 && port[0] != ':' {
			return ErrBadHost
		}
	} else {
		for i, c := range host {
			if c == ':' {
				name, port = host[:i], host[i:]
				break
			}
		}
	}
	if len(port) > 0 {
		p := port[1:]
		if len(p) == 0 || len(p) > 5 {
			return ErrBadPort
		}
		v := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return ErrBadPort
			}
			v = v*10 + int(c-'0')
		}
		if v > 65535 {
			return ErrBadPort
		}
	}
	if name == nil {
		return nil // an IPv6 literal, checked above
	}
	if len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1] // the root label: the same host
	}
	if len(name) == 0 || len(name) > 253 || name[len(name)-1] == '.' {
		return ErrBadHost
	}
	prev := byte('.')
	for _, c := range name {
		if !hostByte[c] {
			return ErrBadHost
		}
		if c == '.' && prev == '.' {
			return ErrBadHost // an empty label
		}
		prev = c
	}
	return nil
}
