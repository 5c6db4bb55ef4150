package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// family is the kind of key an algorithm verifies with. A key is only ever handed to the
// algorithms of its own family, so a public RSA key can never be used as an HMAC secret (the
// classic HS/RS confusion) whatever a token's header says.
type family uint8

const (
	famHMAC family = iota + 1
	famRSA         // RS* and PS*
	famEC
	famEd
)

// algInfo describes one supported signing algorithm.
type algInfo struct {
	fam   family
	size  int            // HMAC: minimum secret length (the hash size, RFC 7518 3.2)
	curve elliptic.Curve // ES*: the only curve it may use
}

var algs = map[string]algInfo{
	"HS256": {fam: famHMAC, size: 32}, "HS384": {fam: famHMAC, size: 48}, "HS512": {fam: famHMAC, size: 64},
	"RS256": {fam: famRSA}, "RS384": {fam: famRSA}, "RS512": {fam: famRSA},
	"PS256": {fam: famRSA}, "PS384": {fam: famRSA}, "PS512": {fam: famRSA},
	"ES256": {fam: famEC, curve: elliptic.P256()}, "ES384": {fam: famEC, curve: elliptic.P384()},
	"ES512": {fam: famEC, curve: elliptic.P521()},
	"EdDSA": {fam: famEd},
}

// minRSABits is RFC 7518 3.3's floor; smaller keys are refused rather than trusted.
const minRSABits = 2048

// key is one verification key. It is immutable once built.
type key struct {
	kid string
	alg string // "" fits every algorithm of its family the issuer allows; never widens the list
	fam family
	pub any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	// fp identifies the key material, so a JWKS refresh that returns the same key keeps the
	// same *key and tokens verified with it stay cached.
	fp string
}

// fits reports whether k may verify a token signed with alg.
func (k *key) fits(alg string) bool {
	a, ok := algs[alg]
	if !ok || a.fam != k.fam || (k.alg != "" && k.alg != alg) {
		return false
	}
	switch p := k.pub.(type) {
	case []byte:
		return len(p) >= a.size
	case *ecdsa.PublicKey:
		return p.Curve == a.curve
	}
	return true
}

// keySet is the keys of one source, indexed by kid. It is immutable: a refresh builds a new one.
type keySet struct {
	byKid map[string]*key
	all   []*key
}

func newKeySet(keys []*key) *keySet {
	s := &keySet{byKid: make(map[string]*key, len(keys)), all: keys}
	for _, k := range keys {
		if k.kid != "" {
			s.byKid[k.kid] = k
		}
	}
	return s
}

// contains reports whether k is still one of the set's keys.
func (s *keySet) contains(k *key) bool {
	if k.kid != "" {
		return s.byKid[k.kid] == k
	}
	return slices.Contains(s.all, k)
}

// jwk is the subset of RFC 7517 members a verification key needs. Private members (d, p, q…)
// are not read, so a key file that holds them still yields only the public key.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	K      string   `json:"k"`
}

// parseJWKS parses a JWK Set. Keys that cannot be used for verification (another use, an
// unknown type or algorithm, a weak or malformed key) are skipped and reported in skipped, so
// one odd key from an identity provider does not discard the others. Symmetric keys are
// accepted only when symmetric is set (a local file): a key set fetched over the network is
// public, and a secret published there is no secret.
func parseJWKS(data []byte, symmetric bool) (keys []*key, skipped []error, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("parse key set: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New("parse key set: no \"keys\" member")
	}
	seen := map[string]bool{}
	for i, raw := range set.Keys {
		k, err := parseJWK(raw, symmetric)
		if err == nil && k.kid != "" && seen[k.kid] {
			err = fmt.Errorf("kid %q appears twice", k.kid)
		}
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		seen[k.kid] = true
		keys = append(keys, k)
	}
	return keys, skipped, nil
}

func parseJWK(raw []byte, symmetric bool) (*key, error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q is not \"sig\"", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return nil, errors.New("key_ops does not include \"verify\"")
	}
	k := &key{kid: j.Kid, alg: j.Alg}
	var err error
	switch j.Kty {
	case "RSA":
		k.fam = famRSA
		k.pub, err = rsaKey(j.N, j.E)
		k.fp = "RSA|" + j.N + "|" + j.E
	case "EC":
		k.fam = famEC
		k.pub, err = ecKey(j.Crv, j.X, j.Y)
		k.fp = "EC|" + j.Crv + "|" + j.X + "|" + j.Y
	case "OKP":
		k.fam = famEd
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q is not supported (want Ed25519)", j.Crv)
		}
		var x []byte
		x, err = b64(j.X)
		if err == nil && len(x) != ed25519.PublicKeySize {
			err = errors.New("x is not 32 bytes")
		}
		k.pub = ed25519.PublicKey(x)
		k.fp = "OKP|" + j.X
	case "oct":
		if !symmetric {
			return nil, errors.New("symmetric (oct) keys are not accepted from a URL")
		}
		k.fam = famHMAC
		var s []byte
		s, err = b64(j.K)
		if err == nil && len(s) < 32 {
			err = errors.New("k is shorter than 32 bytes")
		}
		k.pub = s
		k.fp = "oct|" + j.K
	default:
		return nil, fmt.Errorf("kty %q is not supported", j.Kty)
	}
	if err != nil {
		return nil, err
	}
	if k.alg != "" {
		// A key's own alg may only narrow what the issuer allows, and must suit the key.
		if a, ok := algs[k.alg]; !ok || a.fam != k.fam {
			return nil, fmt.Errorf("alg %q does not suit a %s key", k.alg, j.Kty)
		}
		if !k.fits(k.alg) {
			return nil, fmt.Errorf("alg %q does not suit this key's curve or size", k.alg)
		}
	}
	return k, nil
}

// b64 decodes base64url without padding, strictly (RFC 7515 2): no padding, no stray bits.
func b64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing member")
	}
	return base64.RawURLEncoding.Strict().DecodeString(s)
}

func rsaKey(n, e string) (*rsa.PublicKey, error) {
	nb, err := b64(n)
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	eb, err := b64(e)
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	if len(eb) > 4 {
		return nil, errors.New("e is too large")
	}
	var ev int
	for _, b := range eb {
		ev = ev<<8 | int(b)
	}
	if ev < 3 || ev%2 == 0 {
		return nil, errors.New("e is not an odd number >= 3")
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: ev}
	if bits := pub.N.BitLen(); bits < minRSABits {
		return nil, fmt.Errorf("RSA key has %d bits, fewer than %d", bits, minRSABits)
	}
	return pub, nil
}

var curves = map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}

func ecKey(crv, x, y string) (*ecdsa.PublicKey, error) {
	c, ok := curves[crv]
	if !ok {
		return nil, fmt.Errorf("EC curve %q is not supported (want P-256, P-384 or P-521)", crv)
	}
	size := (c.Params().BitSize + 7) / 8
	xb, err := b64(x)
	if err != nil {
		return nil, fmt.Errorf("x: %w", err)
	}
	yb, err := b64(y)
	if err != nil {
		return nil, fmt.Errorf("y: %w", err)
	}
	if len(xb) != size || len(yb) != size {
		return nil, fmt.Errorf("x and y must be %d bytes each for %s", size, crv)
	}
	// ParseUncompressedPublicKey checks that the point is on the curve: an off-curve point is
	// the door to invalid-curve attacks.
	pub, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, xb...), yb...))
	if err != nil {
		return nil, fmt.Errorf("EC point: %w", err)
	}
	return pub, nil
}

// parsePEM reads one public key: a PKIX "PUBLIC KEY", a PKCS #1 "RSA PUBLIC KEY" or a
// "CERTIFICATE" (its key; the certificate's validity is not checked, as an identity provider's
// self-signed signing certificate is usual).
func parsePEM(data []byte) (*key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		// Never quote the block: it may be a private key pasted by mistake.
		return nil, fmt.Errorf("PEM block type %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse PEM: %w", err)
	}
	k := &key{pub: pub, fp: string(block.Bytes)}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, fewer than %d", p.N.BitLen(), minRSABits)
		}
		k.fam = famRSA
	case *ecdsa.PublicKey:
		k.fam = famEC
	case ed25519.PublicKey:
		k.fam = famEd
	default:
		return nil, fmt.Errorf("unsupported public key type %T", pub)
	}
	return k, nil
}
