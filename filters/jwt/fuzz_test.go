package jwt

import (
	"encoding/json"
	"testing"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/weir-gateway/weir/core/filter"
)

// FuzzToken feeds arbitrary bytes as the bearer token through the whole filter (extraction,
// size cap, structure, issuer and algorithm checks, the library's parser, claims). It must
// never panic, and never admit a token it was not given a valid signature for.
func FuzzToken(f *testing.F) {
	testKeys(f)
	flt := mustBuild(f, filter.Env{}, rsConfig(f, `forward_claims: { sub: X-User-Id, roles: X-Roles }`))
	valid := map[string]bool{
		sign(f, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims()):                                 true,
		sign(f, gojwt.SigningMethodHS256, []byte(hsSecret), "hs1", claims("iss", "https://hs.test")): true,
	}
	for v := range valid {
		f.Add(v)
	}
	for _, v := range loadVectors(f) {
		f.Add(v.Token)
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Add("a.b.c.d")
	f.Fuzz(func(t *testing.T, tok string) {
		c, reached := runTok(t, flt, tok)
		// Without the keys the fuzzer cannot sign, and strict base64 leaves a signed token no
		// second spelling: only the seeded tokens may pass.
		if reached && !valid[tok] {
			t.Fatalf("admitted %q", tok)
		}
		if !reached && c.Response.StatusCode() != 401 && c.Response.StatusCode() != 400 {
			t.Fatalf("refused with %d", c.Response.StatusCode())
		}
	})
}

// FuzzJWKS parses arbitrary key sets: never a panic, and every key it returns fits at least one
// algorithm of its family.
func FuzzJWKS(f *testing.F) {
	for _, v := range loadVectors(f) {
		if v.JWK != nil {
			f.Add([]byte(`{"keys":[` + string(v.JWK) + `]}`))
		}
	}
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"HS256"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, _, err := parseJWKS(data, true)
		if err != nil {
			return
		}
		for _, k := range keys {
			fits := false
			for a := range algs {
				fits = fits || k.fits(a)
			}
			if !fits {
				b, _ := json.Marshal(k.kid)
				t.Fatalf("key %s fits no algorithm", b)
			}
		}
	})
}
