package edge

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Trusted is the set of peer networks whose X-Forwarded-* headers are believed (other proxies
// and load balancers in front of the gateway), with the client-identity fields removed from
// the requests of every other peer. It is immutable once built and safe for concurrent use.
type Trusted struct {
	prefixes []netip.Prefix
	strip    stripSet // from untrusted peers
	always   stripSet // from every peer
}

// stripSet holds fields Sanitize removes. The survey tests every incoming field against it,
// so a cheap filter on length and first letter comes before the names.
type stripSet struct {
	names []string // lower case, '_' written as '-'
	lens  uint64   // bit n: some name has length n (names are at most 63 bytes)
	first [256]bool
}

func newStripSet(names []string) (stripSet, error) {
	var s stripSet
	for _, n := range names {
		if len(n) == 0 || len(n) > 63 || !httpsyntax.IsToken(n) {
			return stripSet{}, fmt.Errorf("strip header %q: not a header name of at most 63 bytes", n)
		}
		n = strings.ReplaceAll(strings.ToLower(n), "_", "-")
		s.names = append(s.names, n)
		s.lens |= 1 << len(n)
		s.first[n[0]] = true
	}
	return s, nil
}

// SetStripHeaders replaces the fields removed from the requests of untrusted peers (see
// config.DefaultStripClientHeaders); an empty list removes none. Call it before the first request.
func (t *Trusted) SetStripHeaders(names []string) (err error) {
	t.strip, err = newStripSet(names)
	return err
}

// SetAlwaysStrip sets the fields removed from every request, trusted peers' included: the
// gateway's own statements about a request (X-Consumer-Name and the other consumer headers),
// which only the gateway may make. Call it before the first request.
func (t *Trusted) SetAlwaysStrip(names []string) (err error) {
	t.always, err = newStripSet(names)
	return err
}

// deleteMatching removes every field of s, in whatever spelling it came. Deleting while
// iterating is unsafe, so it finds one offending spelling, deletes every field with that
// spelling, and looks again; only requests that carry such a field pay for it.
func deleteMatching(h *fasthttp.RequestHeader, s *stripSet) {
	for {
		var buf [64]byte
		var key []byte
		for k := range h.All() {
			if s.has(k) {
				key = append(buf[:0], k...)
				break
			}
		}
		if key == nil {
			return
		}
		h.DelBytes(key)
	}
}

func (s *stripSet) has(key []byte) bool {
	if len(key) == 0 || len(key) > 63 || s.lens&(1<<len(key)) == 0 || !s.first[key[0]|0x20] {
		return false
	}
	for _, n := range s.names {
		if sameName(key, n) {
			return true
		}
	}
	return false
}

// sameName compares a field name with a lower-case one as CGI-style servers read names: PHP,
// WSGI and nginx with underscores_in_headers take X_Real_IP for X-Real-IP, so a stripped name
// must be stripped in that spelling too.
func sameName(key []byte, lower string) bool {
	if len(key) != len(lower) {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// ParseTrusted parses CIDR blocks ("10.0.0.0/8") or single addresses ("192.0.2.7", "::1").
// A nil or empty list trusts nobody.
func ParseTrusted(cidrs []string) (*Trusted, error) {
	t := &Trusted{prefixes: make([]netip.Prefix, 0, len(cidrs))}
	if err := t.SetStripHeaders(config.DefaultStripClientHeaders); err != nil {
		return nil, err
	}
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("parse trusted network %q: %w", s, err)
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			t.prefixes = append(t.prefixes, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("parse trusted address %q: %w", s, err)
		}
		a = a.Unmap()
		t.prefixes = append(t.prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	return t, nil
}

// Contains reports whether addr belongs to a trusted network. A nil *Trusted trusts nobody.
func (t *Trusted) Contains(addr netip.Addr) bool {
	if t == nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Header names as fasthttp stores them with name normalization on (the engine's setting).
const (
	hConnection         = "Connection"
	hKeepAlive          = "Keep-Alive"
	hProxyConnection    = "Proxy-Connection"
	hProxyAuthenticate  = "Proxy-Authenticate"
	hProxyAuthorization = "Proxy-Authorization"
	hTE                 = "Te"
	hTrailer            = "Trailer"
	hTransferEncoding   = "Transfer-Encoding"
	hUpgrade            = "Upgrade"
	hXFF                = "X-Forwarded-For"
	hXFProto            = "X-Forwarded-Proto"
	hXFHost             = "X-Forwarded-Host"
	hXFPort             = "X-Forwarded-Port"
	hForwarded          = "Forwarded"
	hVia                = "Via"
	hExpect             = "Expect"
)

// Bits of a one-pass survey of the request's fields, so that the common request (none of these
// present) costs a single walk over its headers instead of one lookup per name.
const (
	bConnection = 1 << iota
	bKeepAlive
	bProxyConnection
	bProxyAuthenticate
	bProxyAuthorization
	bTE
	bTrailer
	bTransferEncoding
	bUpgrade
	bXFF
	bXFProto
	bXFHost
	bXFPort
	bForwarded
	bStrip  // a field of the strip list
	bAlways // a field stripped whoever the peer
)

var hopNames = [...]struct {
	bit  int
	name string
}{
	{bConnection, hConnection}, {bKeepAlive, hKeepAlive}, {bProxyConnection, hProxyConnection},
	{bProxyAuthenticate, hProxyAuthenticate}, {bProxyAuthorization, hProxyAuthorization},
	{bTE, hTE}, {bTrailer, hTrailer}, {bTransferEncoding, hTransferEncoding}, {bUpgrade, hUpgrade},
}

func surveyBit(key []byte) int {
	if len(key) < 2 {
		return 0
	}
	switch key[0] | 0x20 {
	case 'c':
		if httpsyntax.EqualFold(key, "connection") {
			return bConnection
		}
	case 'k':
		if httpsyntax.EqualFold(key, "keep-alive") {
			return bKeepAlive
		}
	case 'p':
		switch {
		case httpsyntax.EqualFold(key, "proxy-connection"):
			return bProxyConnection
		case httpsyntax.EqualFold(key, "proxy-authenticate"):
			return bProxyAuthenticate
		case httpsyntax.EqualFold(key, "proxy-authorization"):
			return bProxyAuthorization
		}
	case 't':
		switch {
		case httpsyntax.EqualFold(key, "te"):
			return bTE
		case httpsyntax.EqualFold(key, "trailer"):
			return bTrailer
		case httpsyntax.EqualFold(key, "transfer-encoding"):
			return bTransferEncoding
		}
	case 'u':
		if httpsyntax.EqualFold(key, "upgrade") {
			return bUpgrade
		}
	case 'x':
		switch {
		case httpsyntax.EqualFold(key, "x-forwarded-for"):
			return bXFF
		case httpsyntax.EqualFold(key, "x-forwarded-proto"):
			return bXFProto
		case httpsyntax.EqualFold(key, "x-forwarded-host"):
			return bXFHost
		case httpsyntax.EqualFold(key, "x-forwarded-port"):
			return bXFPort
		}
	case 'f':
		if httpsyntax.EqualFold(key, "forwarded") {
			return bForwarded
		}
	}
	return 0
}

func survey(h *fasthttp.RequestHeader, strip, always *stripSet) (seen int) {
	for k := range h.All() {
		if b := surveyBit(k); b != 0 {
			seen |= b
			continue
		}
		if strip.has(k) {
			seen |= bStrip
		}
		if always.has(k) {
			seen |= bAlways
		}
	}
	// fasthttp keeps a lone "Connection: close" as a flag, not as a field.
	if h.ConnectionClose() {
		seen |= bConnection
	}
	return seen
}

// Sanitize prepares a request for the filters and the upstream: it removes hop-by-hop fields and
// every field the Connection header names, then rewrites X-Forwarded-* according to whether the
// peer is trusted. It allocates nothing for a typical request.
//
// Connection may not remove Host, Content-Length or Transfer-Encoding through its list: the
// gateway has already framed the body and routed on the host from them, and letting a client
// delete them would make what the upstream sees disagree with what the gateway checked.
//
// For an untrusted peer, the fields of the strip list (config.DefaultStripClientHeaders unless
// SetStripHeaders changed it; also for a nil *Trusted) are removed, incoming X-Forwarded-For,
// -Proto, -Host, -Port and Forwarded are dropped and X-Forwarded-For, -Proto and -Host are set from the connection. For a trusted peer
// the peer address is appended to X-Forwarded-For, and Proto and Host are kept when present.
//
// It returns the client's address: the peer's, or for a trusted peer the nearest address in
// X-Forwarded-For that is not itself trusted (see clientAddr).
func Sanitize(ctx *fasthttp.RequestCtx, t *Trusted) netip.Addr {
	h := &ctx.Request.Header
	strip, always := &defaultStrip, &noStrip
	if t != nil {
		strip, always = &t.strip, &t.always
	}
	seen := survey(h, strip, always)
	if seen&bAlways != 0 {
		deleteMatching(h, always)
	}

	if seen&bConnection != 0 {
		// The value stays valid while other fields are deleted: deletion moves field records
		// but never rewrites their byte slices.
		for conn := h.Peek(hConnection); len(conn) > 0; {
			var tok []byte
			tok, conn = httpsyntax.NextElement(conn)
			if len(tok) == 0 || !httpsyntax.ConnectionMayRemove(tok) {
				continue
			}
			h.DelBytes(tok)
			seen |= surveyBit(tok)
		}
	}
	for _, hn := range hopNames {
		if seen&hn.bit != 0 {
			h.Del(hn.name)
		}
	}

	var ipBuf [64]byte
	ip := appendPeerIP(ipBuf[:0], ctx)
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if t.Contains(peer) {
		if seen&bXFF != 0 {
			appendXFF(h, ip)
		} else {
			h.SetCanonical(kXFF, ip)
		}
		if seen&bXFProto == 0 {
			setProto(ctx)
		}
		if seen&bXFHost == 0 {
			setXFHost(ctx)
		}
		return clientAddr(h.Peek(hXFF), peer, t)
	}
	if seen&bStrip != 0 {
		deleteMatching(h, strip)
	}
	if seen&bXFPort != 0 {
		h.Del(hXFPort)
	}
	if seen&bForwarded != 0 {
		h.Del(hForwarded)
	}
	// Set replaces every incoming copy of the field.
	h.SetCanonical(kXFF, ip)
	setProto(ctx)
	if seen&bXFHost != 0 {
		h.Del(hXFHost)
	}
	setXFHost(ctx)
	return peer
}

// clientAddr walks X-Forwarded-For (which ends with peer, a trusted proxy) from the right and
// returns the first address that is not a trusted proxy: every address to its right was added
// by a proxy the gateway trusts, and everything to its left was written by the client, who can
// write anything. An entry that is not an address ends the walk at the proxy that passed it
// on, so a client cannot make itself unknown or pick its own address that way.
func clientAddr(xff []byte, peer netip.Addr, t *Trusted) netip.Addr {
	client := peer
	for len(xff) > 0 {
		var tok []byte
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			tok, xff = xff[i+1:], xff[:i]
		} else {
			tok, xff = xff, nil
		}
		tok = httpsyntax.TrimOWS(tok)
		if len(tok) == 0 {
			continue
		}
		// ParseAddr keeps nothing of its argument, so the bytes need no copy.
		a, err := netip.ParseAddr(unsafe.String(&tok[0], len(tok)))
		if err != nil {
			return client
		}
		client = a.Unmap()
		if !t.Contains(client) {
			return client
		}
	}
	return client
}

// noStrip strips nothing.
var noStrip stripSet

var defaultStrip = func() stripSet {
	var t Trusted
	if err := t.SetStripHeaders(config.DefaultStripClientHeaders); err != nil {
		panic(err)
	}
	return t.strip
}()

// Pre-built keys and values: SetCanonical with an already canonical key skips fasthttp's
// per-call copy and case normalization of the name.
var (
	kXFF     = []byte(hXFF)
	kXFProto = []byte(hXFProto)
	kXFHost  = []byte(hXFHost)
	vHTTP    = []byte("http")
	vHTTPS   = []byte("https")
)

func setProto(ctx *fasthttp.RequestCtx) {
	if ctx.IsTLS() {
		ctx.Request.Header.SetCanonical(kXFProto, vHTTPS)
	} else {
		ctx.Request.Header.SetCanonical(kXFProto, vHTTP)
	}
}

// setXFHost records the host the request is routed on and sent upstream with: the Host field,
// into which Edge has already made the authority of an absolute-form target (RFC 9112 section
// 3.2.2: it wins over Host).
func setXFHost(ctx *fasthttp.RequestCtx) {
	if host := ctx.Request.Header.Host(); len(host) > 0 {
		ctx.Request.Header.SetCanonical(kXFHost, host)
	}
}

// appendXFF joins every incoming X-Forwarded-For line and the peer into one field, so that
// upstreams reading only the first line still see the whole chain.
func appendXFF(h *fasthttp.RequestHeader, ip []byte) {
	var buf [512]byte
	b := buf[:0]
	for _, v := range h.PeekAll(hXFF) {
		v = httpsyntax.TrimOWS(v)
		if len(v) == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, ',', ' ')
		}
		b = append(b, v...)
	}
	if len(b) > 0 {
		b = append(b, ',', ' ')
	}
	b = append(b, ip...)
	h.SetCanonical(kXFF, b)
}

func appendPeerIP(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	if a, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		return a.Unmap().AppendTo(dst)
	}
	return append(dst, net.IPv4zero.String()...)
}
