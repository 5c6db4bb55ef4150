// Package jwt implements the "jwt" filter: it admits a request only with a valid JSON Web
// Token from one of the route's trusted issuers, checked against that issuer's algorithm
// allow-list and keys (inline, from a file, or from a JWKS URL refreshed in the background),
// then forwards chosen claims upstream as headers and records the caller's consumer and claims
// for later filters. Signatures are verified with github.com/golang-jwt/jwt/v5.
package jwt

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Filter verifies bearer tokens. It is immutable after New, except for its cache, and safe for
// concurrent use.
type Filter struct {
	// decisions count verdicts in weir_auth_decisions_total (README.md, Metrics).
	decisions telemetry.AuthDecisions
	issuers   map[string]*issuer
	sources   []source
	forward   []forward
	require   []string // claims that must be present, beyond exp, nbf and iss
	leeway    time.Duration
	maxToken  int
	hide      bool
	consReq   bool
	cache     *tokenCache
	consumers *filter.Consumers
	now       func() time.Time
	log       zerolog.Logger
	closers   []func() error

	wwwMissing, wwwInvalid, wwwRequest []byte
}

type issuer struct {
	name    string
	algs    []string
	parser  *gojwt.Parser
	static  *keySet
	fetcher *fetcher
}

// current returns the issuer's key set: fixed, or the fetcher's latest (nil before its first
// successful fetch).
func (is *issuer) current() *keySet {
	if is.fetcher != nil {
		return is.fetcher.current()
	}
	return is.static
}

func (is *issuer) kick() {
	if is.fetcher != nil {
		is.fetcher.kick()
	}
}

const (
	srcHeader uint8 = iota + 1
	srcCookie
	srcQuery
)

type source struct {
	kind   uint8
	name   string
	nameB  []byte
	bearer bool // the header carries "Bearer <token>"
}

type forward struct {
	claim string
	name  []byte // canonical header name
}

// Reasons recorded for the access log. Fixed values: a rejection allocates nothing for them,
// and none quotes the token.
var (
	errMissing     = errors.New("jwt: no token")
	errAmbiguous   = errors.New("jwt: more than one token")
	errTooLarge    = errors.New("jwt: token larger than max_token_bytes")
	errMalformed   = errors.New("jwt: malformed token")
	errIssuer      = errors.New("jwt: issuer not trusted")
	errAlg         = errors.New("jwt: algorithm not allowed for the issuer")
	errCrit        = errors.New("jwt: token has critical header parameters")
	errNoKeys      = errors.New("jwt: issuer's key set not loaded yet")
	errUnknownKid  = errors.New("jwt: unknown kid")
	errNoKey       = errors.New("jwt: no key fits the token's algorithm")
	errSignature   = errors.New("jwt: signature invalid")
	errExpired     = errors.New("jwt: token expired")
	errNotYet      = errors.New("jwt: token not valid yet")
	errIssuedAt    = errors.New("jwt: token issued in the future")
	errAudience    = errors.New("jwt: audience not accepted")
	errClaimMiss   = errors.New("jwt: a required claim is missing")
	errClaims      = errors.New("jwt: invalid claims")
	errClaimHeader = errors.New("jwt: a forwarded claim cannot be sent as a header value")
	errNoConsumer  = errors.New("jwt: token identifies no consumer")
)

// Close releases the JWKS fetchers this filter holds.
func (f *Filter) Close() error {
	var errs []error
	for _, c := range f.closers {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	f.closers = nil
	return errors.Join(errs...)
}

// OnRequest admits the request with a valid token and refuses it otherwise, before anything
// reaches the upstream. A token seen before is accepted from the cache: one SHA-256 of the
// token, one map lookup and a time check, without allocating.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	st := f.decide(c)
	f.decisions.Count(st == filter.Continue)
	return st
}

func (f *Filter) decide(c *filter.Ctx) filter.Status {
	tok, used, st := f.token(c)
	switch st {
	case tokMissing:
		return f.deny(c, 401, f.wwwMissing, errMissing)
	case tokAmbiguous:
		return f.deny(c, 400, f.wwwRequest, errAmbiguous)
	}
	if len(tok) > f.maxToken {
		return f.deny(c, 401, f.wwwInvalid, errTooLarge)
	}
	sum := sha256.Sum256(tok)
	now := f.now()
	v := f.cache.get(&sum)
	if v != nil && !f.fresh(v, now) {
		f.cache.drop(&sum)
		v = nil
	}
	if v == nil {
		var err error
		if v, err = f.verify(tok, now); err != nil {
			return f.deny(c, 401, f.wwwInvalid, err)
		}
		f.cache.put(&sum, v, now.Unix())
	}
	if f.consReq && v.cons == nil {
		return f.deny(c, 401, f.wwwInvalid, errNoConsumer)
	}

	h := &c.Request.Header
	for _, fh := range v.headers {
		// Whatever the client sent under these names goes: only the token speaks for them.
		h.DelBytes(fh.name)
		if fh.value != nil {
			h.SetBytesKV(fh.name, fh.value)
		}
	}
	c.SetClaims(v.claims)
	if v.cons != nil {
		c.SetConsumer(v.cons)
	}
	if f.hide {
		f.hideToken(c, used)
	}
	return filter.Continue
}

// OnResponse does nothing: the filter only guards the request.
func (f *Filter) OnResponse(*filter.Ctx) {}

func (f *Filter) deny(c *filter.Ctx, status int, www []byte, err error) filter.Status {
	c.Response.Header.SetBytesKV(strWWWAuthenticate, www)
	return c.Fail(status, err)
}

var strWWWAuthenticate = []byte("WWW-Authenticate")

// fresh reports whether a cached verification still holds at now: within exp and nbf (with
// leeway), and its key still in the issuer's current key set, so a key the identity provider
// withdrew stops admitting tokens at the next refresh.
func (f *Filter) fresh(v *verified, now time.Time) bool {
	t := now.UnixNano()
	lw := int64(f.leeway)
	if t/int64(time.Second) > v.until ||
		(v.hasExp && t >= v.exp+lw) ||
		(v.hasNbf && t < v.nbf-lw) {
		return false
	}
	if cur := v.iss.current(); cur != v.set && (cur == nil || !cur.contains(v.key)) {
		return false
	}
	return true
}

const (
	tokFound uint8 = iota
	tokMissing
	tokAmbiguous
)

// token finds the request's token: the first configured source that has one. A source given
// twice (two Authorization headers, two cookies or query parameters of that name), or two
// sources with different tokens, is ambiguous: the upstream might read the one not verified.
func (f *Filter) token(c *filter.Ctx) (tok []byte, used int, st uint8) {
	used = -1
	for i := range f.sources {
		t, n := f.sources[i].find(c)
		if n > 1 {
			return nil, -1, tokAmbiguous
		}
		if n == 0 {
			continue
		}
		if used < 0 {
			tok, used = t, i
		} else if !bytes.Equal(t, tok) {
			return nil, -1, tokAmbiguous
		}
	}
	if used < 0 {
		return nil, -1, tokMissing
	}
	return tok, used, tokFound
}

// find returns the source's token and how many times the source occurs.
func (s *source) find(c *filter.Ctx) (tok []byte, n int) {
	switch s.kind {
	case srcHeader:
		for _, v := range c.Request.Header.PeekAll(s.name) {
			if s.bearer {
				t, ok := bearer(v)
				if !ok {
					continue // another scheme (Basic…) is another filter's business
				}
				v = t
			}
			if n == 0 {
				tok = v
			}
			n++
		}
	case srcCookie:
		// The Cookie fields are split here rather than with the header's cookie iterator,
		// whose closure would cost an allocation per request.
		for _, hv := range c.Request.Header.PeekAll(fasthttp.HeaderCookie) {
			for len(hv) > 0 {
				var pair []byte
				pair, hv, _ = bytes.Cut(hv, strSemi)
				k, v, _ := bytes.Cut(bytes.TrimLeft(pair, " \t"), strEq)
				if string(bytes.TrimRight(k, " \t")) == s.name {
					if n == 0 {
						tok = bytes.Trim(v, " \t")
					}
					n++
				}
			}
		}
	case srcQuery:
		q := c.URI().QueryString()
		for len(q) > 0 {
			var pair []byte
			pair, q, _ = bytes.Cut(q, strAmp)
			k, v, _ := bytes.Cut(pair, strEq)
			if queryKeyIs(k, s.name) {
				if n == 0 {
					tok = v
				}
				n++
			}
		}
	}
	return tok, n
}

var (
	strAmp  = []byte("&")
	strSemi = []byte(";")
	strEq   = []byte("=")
)

// queryKeyIs compares a raw query key with name as the upstream would read it: percent-escapes
// and '+' decoded, so "access%5Ftoken" cannot smuggle a second, unverified token past the
// filter.
func queryKeyIs(raw []byte, name string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		ch := raw[i]
		switch ch {
		case '+':
			ch = ' '
		case '%':
			if i+2 < len(raw) && unhex(raw[i+1]) >= 0 && unhex(raw[i+2]) >= 0 {
				ch = byte(unhex(raw[i+1])<<4 | unhex(raw[i+2]))
				i += 2
			}
		}
		if j >= len(name) || name[j] != ch {
			return false
		}
		j++
	}
	return j == len(name)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// bearer parses "Bearer <token>" (RFC 6750 2.1; the scheme is case-insensitive).
func bearer(v []byte) ([]byte, bool) {
	const scheme = "bearer"
	if len(v) == len(scheme) && asciiEqualFold(v, scheme) {
		return v[:0], true // "Bearer" with nothing after it: a token, empty, hence invalid
	}
	if len(v) < len(scheme)+1 || !asciiEqualFold(v[:len(scheme)], scheme) || (v[len(scheme)] != ' ' && v[len(scheme)] != '\t') {
		return nil, false
	}
	return bytes.Trim(v[len(scheme):], " \t"), true
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hideToken removes the token from every source that carries it.
func (f *Filter) hideToken(c *filter.Ctx, used int) {
	for i := range f.sources {
		s := &f.sources[i]
		if _, n := s.find(c); n == 0 {
			continue
		}
		switch s.kind {
		case srcHeader:
			c.Request.Header.DelBytes(s.nameB)
		case srcCookie:
			c.Request.Header.DelCookieBytes(s.nameB)
		case srcQuery:
			removeQuery(c, s.name)
		}
	}
}

var queryBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func removeQuery(c *filter.Ctx, name string) {
	bp := queryBufs.Get().(*[]byte)
	out := (*bp)[:0]
	q := c.URI().QueryString()
	for len(q) > 0 {
		var pair []byte
		pair, q, _ = bytes.Cut(q, strAmp)
		k, _, _ := bytes.Cut(pair, strEq)
		if queryKeyIs(k, name) {
			continue
		}
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, pair...)
	}
	c.URI().SetQueryStringBytes(out) // copies
	*bp = out
	queryBufs.Put(bp)
}

// verify checks a token seen for the first time, completely: structure, issuer, algorithm
// against the issuer's allow-list (before any key is looked at), key, signature, then claims.
// Only this path allocates; its result is cached.
func (f *Filter) verify(tok []byte, now time.Time) (*verified, error) {
	s := string(tok) // a copy: nothing below keeps request memory
	iss, alg, err := peek(s)
	if err != nil {
		return nil, err
	}
	is := f.issuers[iss]
	if is == nil {
		return nil, errIssuer
	}
	if !slices.Contains(is.algs, alg) {
		// Refused before any key is chosen: this is what makes "none" and HS/RS confusion
		// impossible, whatever keys the issuer has.
		return nil, errAlg
	}
	set := is.current()
	if set == nil {
		is.kick()
		return nil, errNoKeys
	}
	var used *key
	claims := gojwt.MapClaims{}
	_, err = is.parser.ParseWithClaims(s, claims, func(t *gojwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 4.1.11: extensions this verifier does not understand must fail.
			return nil, errCrit
		}
		alg := t.Method.Alg()
		if kv, ok := t.Header["kid"]; ok {
			kid, ok := kv.(string)
			if !ok {
				return nil, errMalformed
			}
			k := set.byKid[kid]
			if k == nil {
				is.kick()
				return nil, errUnknownKid
			}
			if !k.fits(alg) {
				return nil, errNoKey
			}
			used = k
			return k.pub, nil
		}
		// No kid: the key that fits the algorithm and verifies. Several candidates are tried
		// here so that the one used is known (the cache remembers it).
		signing := t.Raw[:strings.LastIndexByte(t.Raw, '.')]
		for _, k := range set.all {
			if k.fits(alg) && t.Method.Verify(signing, t.Signature, k.pub) == nil {
				used = k
				return k.pub, nil
			}
		}
		return nil, errSignature
	})
	if err != nil {
		return nil, mapErr(err)
	}
	for _, r := range f.require {
		if _, ok := claims[r]; !ok {
			return nil, errClaimMiss
		}
	}
	v := &verified{iss: is, set: set, key: used, claims: &claimSet{m: make(map[string]string, len(claims))}}
	if exp, _ := claims.GetExpirationTime(); exp != nil {
		v.hasExp, v.exp = true, exp.UnixNano()
		v.until = exp.Add(f.leeway).Unix()
	} else {
		v.until = now.Add(maxUncachedLife).Unix()
	}
	if nbf, _ := claims.GetNotBefore(); nbf != nil {
		v.hasNbf, v.nbf = true, nbf.UnixNano()
	}
	for name, val := range claims {
		if t, ok := claimText(val); ok {
			v.claims.m[name] = t
		}
	}
	for _, fw := range f.forward {
		h := header{name: fw.name}
		if t, ok := v.claims.m[fw.claim]; ok {
			if !headerSafe(t) {
				return nil, errClaimHeader
			}
			h.value = []byte(t)
		}
		v.headers = append(v.headers, h)
	}
	if sub, ok := claims["sub"].(string); ok {
		v.cons = f.consumers.ByJWT(iss, sub)
	}
	return v, nil
}

// maxUncachedLife bounds how long a token without exp stays cached (when require drops exp).
const maxUncachedLife = 5 * time.Minute

// peek reads the header's alg and the iss claim without verifying anything, only to pick the
// issuer whose allow-list, keys and rules then verify the token.
func peek(s string) (iss, alg string, err error) {
	h, rest, ok := strings.Cut(s, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	// An empty signature is left to the algorithm check: "none" is refused as such.
	if !ok || !ok2 || h == "" || p == "" || strings.IndexByte(sig, '.') >= 0 {
		return "", "", errMalformed
	}
	var head struct {
		Alg *string `json:"alg"`
	}
	var claims struct {
		Iss *string `json:"iss"`
	}
	if decodeJSON(h, &head) != nil || head.Alg == nil || decodeJSON(p, &claims) != nil || claims.Iss == nil {
		return "", "", errMalformed
	}
	return *claims.Iss, *head.Alg, nil
}

func decodeJSON(seg string, v any) error {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// claimText renders a claim as text: strings as they are, numbers as written, booleans,
// lists of scalars joined with commas, anything else as compact JSON.
func claimText(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			switch e.(type) {
			case string, json.Number, bool:
				t, _ := claimText(e)
				parts = append(parts, t)
			default:
				b, err := json.Marshal(x)
				return string(b), err == nil
			}
		}
		return strings.Join(parts, ","), true
	}
	b, err := json.Marshal(v)
	return string(b), err == nil
}

// headerSafe reports whether a claim can be a header value: no control bytes (CR and LF would
// split the header), tab excepted.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// mapErr turns the library's errors into the filter's fixed reasons.
func mapErr(err error) error {
	for _, e := range []error{errCrit, errUnknownKid, errNoKey, errMalformed, errSignature} {
		if errors.Is(err, e) {
			return e
		}
	}
	switch {
	case errors.Is(err, gojwt.ErrTokenMalformed):
		return errMalformed
	case errors.Is(err, gojwt.ErrTokenSignatureInvalid):
		return errSignature
	case errors.Is(err, gojwt.ErrTokenUnverifiable):
		return errAlg // alg missing or unknown
	case errors.Is(err, gojwt.ErrTokenExpired):
		return errExpired
	case errors.Is(err, gojwt.ErrTokenNotValidYet):
		return errNotYet
	case errors.Is(err, gojwt.ErrTokenUsedBeforeIssued):
		return errIssuedAt
	case errors.Is(err, gojwt.ErrTokenInvalidAudience):
		return errAudience
	case errors.Is(err, gojwt.ErrTokenInvalidIssuer):
		return errIssuer
	case errors.Is(err, gojwt.ErrTokenRequiredClaimMissing):
		return errClaimMiss
	}
	return errClaims
}
