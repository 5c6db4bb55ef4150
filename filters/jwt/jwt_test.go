package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

// Test keys, made once: RSA key generation is slow.
var (
	keysOnce sync.Once
	rsaPriv  *rsa.PrivateKey
	ecPriv   *ecdsa.PrivateKey
	edPriv   ed25519.PrivateKey
)

const hsSecret = "a-test-secret-of-at-least-32-bytes-long!"

func testKeys(tb testing.TB) {
	tb.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecPriv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if _, edPriv, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

func pemOf(tb testing.TB, pub any) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// testNow is the clock of every filter built here; tokens are issued relative to it.
var testNow = time.Unix(1_800_000_000, 0)

// sign makes a token with the given claims; kid "" leaves it out.
func sign(tb testing.TB, method gojwt.SigningMethod, priv any, kid string, claims gojwt.MapClaims) string {
	tb.Helper()
	t := gojwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func claims(extra ...any) gojwt.MapClaims {
	c := gojwt.MapClaims{"iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": testNow.Add(time.Hour).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return c
}

// build runs the factory on a YAML config with env, and fixes the filter's clock.
func build(tb testing.TB, env filter.Env, yamlCfg string) (*Filter, error) {
	tb.Helper()
	tree, err := filtertest.ParseYAML(yamlCfg)
	if err != nil {
		tb.Fatal(err)
	}
	if env.Route == "" {
		env.Route, env.Filter = "test", Name
	}
	f, err := New(env, func(v any) error { return config.DecodeStrict(tree, v) })
	if err != nil {
		return nil, err
	}
	jf := f.(*Filter)
	jf.now = func() time.Time { return testNow }
	tb.Cleanup(func() { _ = jf.Close() })
	return jf, nil
}

func mustBuild(tb testing.TB, env filter.Env, yamlCfg string) *Filter {
	tb.Helper()
	f, err := build(tb, env, yamlCfg)
	if err != nil {
		tb.Fatalf("build: %v", err)
	}
	return f
}

// rsConfig trusts https://idp.test with RS256 and ES256 keys, and an HS256 issuer.
func rsConfig(tb testing.TB, extra string) string {
	testKeys(tb)
	ind := func(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n            ") }
	return fmt.Sprintf(`
issuers:
  - issuer: https://idp.test
    audiences: [api]
    algorithms: [RS256, ES256, EdDSA]
    keys:
      - kid: rsa1
        pem: |
            %s
      - kid: ec1
        pem: |
            %s
      - kid: ed1
        pem: |
            %s
  - issuer: https://hs.test
    algorithms: [HS256]
    keys:
      - { kid: hs1, secret: %q }
%s`, ind(pemOf(tb, &rsaPriv.PublicKey)), ind(pemOf(tb, &ecPriv.PublicKey)), ind(pemOf(tb, edPriv.Public())), hsSecret, extra)
}

// run plays one request through the filter followed by an upstream that records what it got.
func run(tb testing.TB, f filter.Filter, raw string) (c *filter.Ctx, reached bool) {
	tb.Helper()
	c = filtertest.NewCtx(tb, raw)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	p.Run(c, func(*filter.Ctx) { reached = true })
	return c, reached
}

// runTok is run with the token set on the request directly, so it may exceed the test
// parser's header buffer.
func runTok(tb testing.TB, f filter.Filter, tok string) (c *filter.Ctx, reached bool) {
	tb.Helper()
	c = filtertest.NewCtx(tb, "GET /a HTTP/1.1\nHost: h\n")
	c.Request.Header.Set("Authorization", "Bearer "+tok)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	p.Run(c, func(*filter.Ctx) { reached = true })
	return c, reached
}

func bearerReq(tok string) string {
	return "GET /a HTTP/1.1\nHost: h\nAuthorization: Bearer " + tok + "\n"
}

func TestAccept(t *testing.T) {
	f := mustBuild(t, filter.Env{}, rsConfig(t, `forward_claims: { sub: X-User-Id, email: X-User-Email, roles: X-Roles }`))
	toks := map[string]string{
		"RS256": sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("email", "a@x.test", "roles", []any{"admin", "dev"})),
		"ES256": sign(t, gojwt.SigningMethodES256, ecPriv, "ec1", claims("email", "a@x.test", "roles", []any{"admin", "dev"})),
		"EdDSA": sign(t, gojwt.SigningMethodEdDSA, edPriv, "ed1", claims("email", "a@x.test", "roles", []any{"admin", "dev"})),
	}
	for name, tok := range toks {
		t.Run(name, func(t *testing.T) {
			// The client's own X-User-Id copies must not survive.
			c, reached := run(t, f, bearerReq(tok)+"X-User-Id: mallory\nx-user-id: eve\n")
			if !reached {
				t.Fatalf("refused: %d %v", c.Response.StatusCode(), c.Err())
			}
			if got := c.Request.Header.PeekAll("X-User-Id"); len(got) != 1 || string(got[0]) != "alice" {
				t.Errorf("X-User-Id: got %q, want [alice]", got)
			}
			if got := string(c.Request.Header.Peek("X-Roles")); got != "admin,dev" {
				t.Errorf("X-Roles: got %q", got)
			}
			if got := string(c.Request.Header.Peek("Authorization")); got == "" {
				t.Errorf("Authorization removed without hide_credentials")
			}
			cl := c.Claims()
			if cl == nil {
				t.Fatal("no claims recorded")
			}
			if v, ok := cl.Claim("sub"); !ok || v != "alice" {
				t.Errorf("Claim(sub) = %q, %v", v, ok)
			}
			if v, _ := cl.Claim("exp"); v != fmt.Sprint(testNow.Add(time.Hour).Unix()) {
				t.Errorf("Claim(exp) = %q", v)
			}
		})
	}
	t.Run("HS256 without aud", func(t *testing.T) {
		tok := sign(t, gojwt.SigningMethodHS256, []byte(hsSecret), "hs1", claims("iss", "https://hs.test", "aud", nil))
		if c, reached := run(t, f, bearerReq(tok)); !reached {
			t.Fatalf("refused: %v", c.Err())
		}
	})
	t.Run("absent claim strips the header", func(t *testing.T) {
		tok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims())
		c, reached := run(t, f, bearerReq(tok)+"X-User-Email: forged@x.test\n")
		if !reached {
			t.Fatal("refused")
		}
		if got := c.Request.Header.Peek("X-User-Email"); got != nil {
			t.Errorf("client's X-User-Email kept: %q", got)
		}
	})
}

func TestSources(t *testing.T) {
	testKeys(t)
	tok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims())
	other := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("sub", "bob"))
	f := mustBuild(t, filter.Env{}, rsConfig(t, `
from: ["header:Authorization", "cookie:token", "query:access_token"]
hide_credentials: true`))
	tests := []struct {
		name    string
		req     string
		status  int // 0: accepted
		www     string
		checkUp func(t *testing.T, c *filter.Ctx)
	}{
		{"header", bearerReq(tok), 0, "", func(t *testing.T, c *filter.Ctx) {
			if h := c.Request.Header.Peek("Authorization"); h != nil {
				t.Errorf("Authorization not hidden")
			}
		}},
		{"lower-case scheme", "GET / HTTP/1.1\nHost: h\nAuthorization: bearer  " + tok + "\n", 0, "", nil},
		{"cookie", "GET / HTTP/1.1\nHost: h\nCookie: a=1; token=" + tok + "; b=2\n", 0, "", func(t *testing.T, c *filter.Ctx) {
			if v := c.Request.Header.Cookie("token"); v != nil {
				t.Errorf("cookie not hidden")
			}
			if v := string(c.Request.Header.Cookie("b")); v != "2" {
				t.Errorf("other cookie lost: %q", v)
			}
		}},
		{"query", "GET /p?x=1&access_token=" + tok + "&y=a%2Fb HTTP/1.1\nHost: h\n", 0, "", func(t *testing.T, c *filter.Ctx) {
			if got := filtertest.Target(&c.Request); got != "/p?x=1&y=a%2Fb" {
				t.Errorf("target: got %q", got)
			}
		}},
		{"same token twice in two sources", "GET /p?access_token=" + tok + " HTTP/1.1\nHost: h\nAuthorization: Bearer " + tok + "\n", 0, "", nil},
		{"missing", "GET / HTTP/1.1\nHost: h\n", 401, "Bearer", nil},
		{"basic scheme only", "GET / HTTP/1.1\nHost: h\nAuthorization: Basic YTpi\n", 401, "Bearer", nil},
		{"two Authorization headers", bearerReq(tok) + "Authorization: Bearer " + other + "\n", 400, `Bearer error="invalid_request"`, nil},
		{"two sources disagree", "GET /p?access_token=" + other + " HTTP/1.1\nHost: h\nAuthorization: Bearer " + tok + "\n", 400, `Bearer error="invalid_request"`, nil},
		{"encoded query key smuggles a second token", "GET /p?access%5Ftoken=" + other + " HTTP/1.1\nHost: h\nAuthorization: Bearer " + tok + "\n", 400, `Bearer error="invalid_request"`, nil},
		{"two cookies", "GET / HTTP/1.1\nHost: h\nCookie: token=" + tok + "; token=" + other + "\n", 400, `Bearer error="invalid_request"`, nil},
		{"empty bearer", "GET / HTTP/1.1\nHost: h\nAuthorization: Bearer \n", 401, `Bearer error="invalid_token"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, reached := run(t, f, tt.req)
			if tt.status == 0 {
				if !reached {
					t.Fatalf("refused: %d %v", c.Response.StatusCode(), c.Err())
				}
				if tt.checkUp != nil {
					tt.checkUp(t, c)
				}
				return
			}
			if reached {
				t.Fatal("the upstream was reached")
			}
			if got := c.Response.StatusCode(); got != tt.status {
				t.Errorf("status: got %d, want %d", got, tt.status)
			}
			if got := string(c.Response.Header.Peek("WWW-Authenticate")); got != tt.www {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.www)
			}
		})
	}
}

// TestRejections tries every way around the filter; none may reach the upstream.
func TestRejections(t *testing.T) {
	testKeys(t)
	f := mustBuild(t, filter.Env{}, rsConfig(t, `require: [exp, sub]`))
	b64 := base64.RawURLEncoding.EncodeToString
	rsTok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims())
	parts := strings.Split(rsTok, ".")
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	// HS/RS confusion: an HMAC token whose "secret" is the issuer's public key, as a library
	// that trusts the header's alg would verify it.
	pubPEM := pemOf(t, &rsaPriv.PublicKey)
	confusion := sign(t, gojwt.SigningMethodHS256, []byte(pubPEM), "rsa1", claims())
	confusionNoKid := sign(t, gojwt.SigningMethodHS256, []byte(pubPEM), "", claims())
	der, _ := x509.MarshalPKIXPublicKey(&rsaPriv.PublicKey)
	confusionDER := sign(t, gojwt.SigningMethodHS256, der, "rsa1", claims())
	noneTok := b64([]byte(`{"alg":"none","kid":"rsa1"}`)) + "." + parts[1] + "."
	noneSig := b64([]byte(`{"alg":"none"}`)) + "." + parts[1] + "." + parts[2]
	hdr := func(h string) string { return b64([]byte(h)) + "." + parts[1] + "." + parts[2] }
	payload := func(p string) string { return parts[0] + "." + b64([]byte(p)) + "." + parts[2] }
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"alg none with kid", noneTok, errAlg},
		{"alg none with a signature", noneSig, errAlg},
		{"alg NONE", hdr(`{"alg":"NONE","kid":"rsa1"}`), errAlg},
		{"HS256 signed with the RSA public key PEM", confusion, errAlg},
		{"HS256 signed with the RSA public key PEM, no kid", confusionNoKid, errAlg},
		{"HS256 signed with the RSA public key DER", confusionDER, errAlg},
		{"HS256 issuer key with an RS token", sign(t, gojwt.SigningMethodRS256, rsaPriv, "hs1", claims("iss", "https://hs.test")), errAlg},
		{"RS token naming the EC key", sign(t, gojwt.SigningMethodRS256, rsaPriv, "ec1", claims()), errNoKey},
		{"PS256 not in the allow-list", sign(t, gojwt.SigningMethodPS256, rsaPriv, "rsa1", claims()), errAlg},
		{"RS384 not in the allow-list", sign(t, gojwt.SigningMethodRS384, rsaPriv, "rsa1", claims()), errAlg},
		{"signed by another key", sign(t, gojwt.SigningMethodRS256, otherRSA, "rsa1", claims()), errSignature},
		{"signed by another key, no kid", sign(t, gojwt.SigningMethodRS256, otherRSA, "", claims()), errSignature},
		{"payload altered", payload(`{"iss":"https://idp.test","aud":"api","sub":"admin","exp":1900000000}`), errSignature},
		{"expired", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("exp", testNow.Add(-31*time.Second).Unix())), errExpired},
		{"expired, fractional", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("exp", float64(testNow.Unix())-30.5)), errExpired},
		{"no exp", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("exp", nil)), errClaimMiss},
		{"exp as a string", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("exp", "1900000000")), errClaims},
		{"not yet valid", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("nbf", testNow.Add(time.Minute).Unix())), errNotYet},
		{"issued in the future", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("iat", testNow.Add(time.Hour).Unix())), errIssuedAt},
		{"wrong issuer", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("iss", "https://evil.test")), errIssuer},
		{"issuer of another key set", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("iss", "https://hs.test")), errAlg},
		{"no issuer", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("iss", nil)), errMalformed},
		{"issuer not a string", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("iss", 7)), errMalformed},
		{"wrong audience", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("aud", "other")), errAudience},
		{"no audience", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("aud", nil)), errClaimMiss},
		{"missing required sub", sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("sub", nil)), errClaimMiss},
		{"unknown kid", sign(t, gojwt.SigningMethodRS256, rsaPriv, "nope", claims()), errUnknownKid},
		{"kid not a string", hdr(`{"alg":"RS256","kid":7}`), errMalformed},
		{"crit header", hdr(`{"alg":"RS256","kid":"rsa1","crit":["exp"],"exp":1}`), errCrit},
		{"two segments", parts[0] + "." + parts[1], errMalformed},
		{"four segments", rsTok + ".x", errMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", errSignature},
		{"empty token", "", errMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], errMalformed},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(rsTok), errMalformed},
		{"header not JSON", b64([]byte("{")) + "." + parts[1] + "." + parts[2], errMalformed},
		{"payload not an object", parts[0] + "." + b64([]byte(`[1]`)) + "." + parts[2], errMalformed},
		{"garbage", "not-a-token", errMalformed},
		{"spaces", "a b.c d.e f", errMalformed},
		{"oversized", rsTok + strings.Repeat("A", 9000), errTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, reached := runTok(t, f, tt.tok)
			if reached {
				t.Fatal("the upstream was reached")
			}
			if got := c.Response.StatusCode(); got != 401 {
				t.Errorf("status: got %d, want 401", got)
			}
			if got := c.Err(); got != tt.want {
				t.Errorf("reason: got %v, want %v", got, tt.want)
			}
			if got := string(c.Response.Header.Peek("WWW-Authenticate")); got != `Bearer error="invalid_token"` {
				t.Errorf("WWW-Authenticate: got %q", got)
			}
			if body := string(c.Response.Body()); !strings.Contains(body, `"status":401`) || (tt.tok != "" && strings.Contains(body, tt.tok)) {
				t.Errorf("body: %q", body)
			}
		})
	}
}

// TestCachedTokenRechecked: a cached token still expires, and a key withdrawn from the set
// stops admitting the tokens it verified.
func TestCachedTokenRechecked(t *testing.T) {
	f := mustBuild(t, filter.Env{}, rsConfig(t, `leeway: 0s`))
	tok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("exp", testNow.Add(time.Minute).Unix()))
	if _, ok := run(t, f, bearerReq(tok)); !ok {
		t.Fatal("refused")
	}
	if f.cache.Len() != 1 {
		t.Fatalf("cache holds %d tokens, want 1", f.cache.Len())
	}
	f.now = func() time.Time { return testNow.Add(time.Minute) }
	if c, ok := run(t, f, bearerReq(tok)); ok || c.Err() != errExpired {
		t.Fatalf("expired cached token: reached %v, reason %v", ok, c.Err())
	}
	f.now = func() time.Time { return testNow }
	if _, ok := run(t, f, bearerReq(tok)); !ok {
		t.Fatal("refused again")
	}
	is := f.issuers["https://idp.test"]
	var kept []*key
	for _, k := range is.static.all {
		if k.kid != "rsa1" {
			kept = append(kept, k)
		}
	}
	is.static = newKeySet(kept)
	if c, ok := run(t, f, bearerReq(tok)); ok || c.Err() != errUnknownKid {
		t.Fatalf("token of a withdrawn key: reached %v, reason %v", ok, c.Err())
	}
}

func TestConsumer(t *testing.T) {
	testKeys(t)
	alice := &filter.Consumer{Name: "alice", JWT: []filter.JWTSubject{{Issuer: "https://idp.test", Subject: "alice"}}}
	cs, err := filter.NewConsumers([]*filter.Consumer{alice})
	if err != nil {
		t.Fatal(err)
	}
	f := mustBuild(t, filter.Env{Consumers: cs}, rsConfig(t, `consumer_required: true`))
	c, ok := run(t, f, bearerReq(sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims())))
	if !ok || c.Consumer() != alice {
		t.Fatalf("alice: reached %v, consumer %v", ok, c.Consumer())
	}
	c, ok = run(t, f, bearerReq(sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("sub", "bob"))))
	if ok || c.Err() != errNoConsumer || c.Response.StatusCode() != 401 {
		t.Fatalf("bob: reached %v, reason %v", ok, c.Err())
	}
}

func TestClaimHeaderInjection(t *testing.T) {
	f := mustBuild(t, filter.Env{}, rsConfig(t, `forward_claims: { name: X-Name }`))
	tok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims("name", "a\r\nX-Admin: 1"))
	if c, ok := run(t, f, bearerReq(tok)); ok || c.Err() != errClaimHeader {
		t.Fatalf("reached %v, reason %v", ok, c.Err())
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	jwks := filepath.Join(dir, "k.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	iss := func(s string) string { return `{issuers: [{issuer: i, ` + s + `}]}` }
	sec := `keys: [{secret: "` + hsSecret + `"}]`
	tests := []struct{ cfg, want string }{
		{`{}`, "at least one issuer"},
		{`{issuers: [{algorithms: [HS256], ` + sec + `}]}`, "issuer is required"},
		{iss(sec), "algorithms is required"},
		{iss(`algorithms: [none], ` + sec), `"none"`},
		{iss(`algorithms: [HS1], ` + sec), "not supported"},
		{iss(`algorithms: [HS256, RS256], ` + sec), "cannot share an issuer"},
		{iss(`algorithms: [HS256, HS256], ` + sec), "listed twice"},
		{iss(`algorithms: [HS256]`), "exactly one of jwks_url"},
		{iss(`algorithms: [HS256], jwks_url: "https://x/j", ` + sec), "exactly one of jwks_url"},
		{iss(`algorithms: [HS256], jwks_url: "https://x/j"`), "never fetched from a URL"},
		{iss(`algorithms: [RS256], jwks_url: "file:///etc/passwd"`), "http:// or https://"},
		{iss(`algorithms: [RS256], jwks_url: "https://u:p@x/j"`), "credentials"},
		{iss(`algorithms: [RS256], jwks_url: "https://x/j", jwks: {min_refresh: 2h, max_refresh: 1h}`), "above max_refresh"},
		{iss(`algorithms: [HS256], ` + sec + `, jwks: {timeout: 1s}`), "jwks_url only"},
		{iss(`algorithms: [RS256], jwks_file: ` + jwks), "fewer than 2048"},
		{iss(`algorithms: [RS256], jwks_file: /nonexistent/k.json`), "jwks_file"},
		{iss(`algorithms: [HS256], keys: [{secret: short}]`), "at least 32"},
		{iss(`algorithms: [HS512], ` + sec), "suits none"},
		{iss(`algorithms: [HS256], keys: [{secret: "` + hsSecret + `", secret_env: X}]`), "exactly one of pem"},
		{iss(`algorithms: [HS256], keys: [{secret_env: WEIR_JWT_TEST_UNSET}]`), "is not set"},
		{iss(`algorithms: [HS256], keys: [{secret: "!!!", secret_encoding: base64url}]`), "not valid base64url"},
		{iss(`algorithms: [HS256], keys: [{secret: "` + hsSecret + `", alg: HS384}]`), "does not suit"},
		{iss(`algorithms: [RS256], keys: [{pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}]`), "not a public key"},
		{iss(`algorithms: [RS256], keys: [{pem: nonsense}]`), "no PEM block"},
		{iss(`algorithms: [HS256], ` + sec + `, bogus: 1`), "bogus"},
		{`{issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}, {issuer: i, algorithms: [HS256], ` + sec + `}]}`, "listed twice"},
		{`{from: ["body:x"], issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "want header:"},
		{`{from: ["header:Bad Name"], issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "header"},
		{`{from: ["query:a&b"], issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "query parameter"},
		{`{forward_claims: {sub: Authorization}, issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "cannot carry"},
		{`{forward_claims: {sub: X-A, email: x-a}, issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "both forward"},
		{`{forward_claims: {sub: Content-Length}, issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "managed by the proxy"},
		{`{leeway: 1h, issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "leeway"},
		{`{max_token_bytes: 1MiB, issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "max_token_bytes"},
		{`{realm: 'a"b', issuers: [{issuer: i, algorithms: [HS256], ` + sec + `}]}`, "realm"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := build(t, filter.Env{}, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), hsSecret) {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte(hsSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIR_JWT_TEST_SECRET", hsSecret)
	tok := sign(t, gojwt.SigningMethodHS256, []byte(hsSecret), "", claims("aud", nil))
	for _, k := range []string{
		`{secret: "` + hsSecret + `"}`,
		`{secret_file: ` + file + `}`,
		`{secret_env: WEIR_JWT_TEST_SECRET}`,
		`{secret: "` + base64.StdEncoding.EncodeToString([]byte(hsSecret)) + `", secret_encoding: base64}`,
		`{secret: "` + base64.RawURLEncoding.EncodeToString([]byte(hsSecret)) + `", secret_encoding: base64url}`,
	} {
		f := mustBuild(t, filter.Env{}, `{issuers: [{issuer: "https://idp.test", algorithms: [HS256], keys: [`+k+`]}]}`)
		if c, ok := run(t, f, bearerReq(tok)); !ok {
			t.Errorf("%s: refused: %v", k, c.Err())
		}
	}
}

// vector is one published test vector (testdata/vectors.json): RFC 7515 Appendix A, RFC 7520
// section 4 and RFC 8037 A.4.
type vector struct {
	Name   string          `json:"name"`
	Alg    string          `json:"alg"`
	JWT    bool            `json:"jwt"` // the payload is a JWT claims set (iss "joe")
	Reject bool            `json:"reject"`
	JWK    json.RawMessage `json:"jwk"`
	Token  string          `json:"token"`
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(data, &vs); err != nil {
		tb.Fatal(err)
	}
	return vs
}

// TestVectors verifies every published signature with the key parsing and algorithm rules of
// the filter, refuses each one altered by a bit, and runs the RFC 7515 JWTs (whose exp is
// 2011-03-22) through the whole filter with the clock set before it.
func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			if v.Reject {
				// A.5: unsecured. Refused for an issuer allowing every algorithm there is.
				f := mustBuild(t, filter.Env{}, `{require: [], issuers: [{issuer: joe, algorithms: [HS256], keys: [{secret: "`+hsSecret+`"}]}]}`)
				f.now = func() time.Time { return time.Unix(1300819380-60, 0) }
				if c, ok := run(t, f, bearerReq(v.Token)); ok || c.Err() != errAlg {
					t.Fatalf("reached %v, reason %v", ok, c.Err())
				}
				return
			}
			k, err := parseJWK(v.JWK, true)
			if err != nil {
				t.Fatal(err)
			}
			if !k.fits(v.Alg) {
				t.Fatalf("key does not fit %s", v.Alg)
			}
			m := gojwt.GetSigningMethod(v.Alg)
			i := strings.LastIndexByte(v.Token, '.')
			sig, err := base64.RawURLEncoding.DecodeString(v.Token[i+1:])
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(v.Token[:i], sig, k.pub); err != nil {
				t.Fatalf("verify: %v", err)
			}
			sig[len(sig)/2] ^= 1
			if err := m.Verify(v.Token[:i], sig, k.pub); err == nil {
				t.Fatal("altered signature verified")
			}
			for other := range algs {
				if other != v.Alg && k.fits(other) && algs[other].fam != algs[v.Alg].fam {
					t.Errorf("key also fits %s", other)
				}
			}
			if !v.JWT {
				return
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "jwks.json")
			if err := os.WriteFile(file, []byte(`{"keys":[`+string(v.JWK)+`]}`), 0o600); err != nil {
				t.Fatal(err)
			}
			f := mustBuild(t, filter.Env{}, `{forward_claims: {"http://example.com/is_root": X-Root}, issuers: [{issuer: joe, algorithms: [`+v.Alg+`], jwks_file: `+file+`}]}`)
			f.now = func() time.Time { return time.Unix(1300819380-60, 0) }
			c, ok := run(t, f, bearerReq(v.Token))
			if !ok {
				t.Fatalf("refused: %v", c.Err())
			}
			if got := string(c.Request.Header.Peek("X-Root")); got != "true" {
				t.Errorf("X-Root: got %q", got)
			}
			f.now = func() time.Time { return time.Unix(1300819380+31, 0) }
			if c, ok := run(t, f, bearerReq(v.Token)); ok || c.Err() != errExpired {
				t.Errorf("after exp: reached %v, reason %v", ok, c.Err())
			}
		})
	}
}

const benchCfgExtra = `forward_claims: { sub: X-User-Id }`

// TestZeroAllocs: a token already verified is accepted without allocating.
func TestZeroAllocs(t *testing.T) {
	f := mustBuild(t, filter.Env{}, rsConfig(t, benchCfgExtra))
	tok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "rsa1", claims())
	c := filtertest.NewCtx(t, bearerReq(tok)+"X-User-Id: forged\n")
	if f.OnRequest(c) != filter.Continue {
		t.Fatalf("refused: %v", c.Err())
	}
	allocs := testing.AllocsPerRun(200, func() {
		if f.OnRequest(c) != filter.Continue {
			t.Fatal("refused")
		}
		f.OnResponse(c)
	})
	if allocs != 0 {
		t.Fatalf("accepting a cached token allocates %v times, want 0", allocs)
	}
}

func benchAccept(b *testing.B, cfgExtra string, method gojwt.SigningMethod, priv any, kid, iss string) {
	f := mustBuild(b, filter.Env{}, rsConfig(b, benchCfgExtra+"\n"+cfgExtra))
	tok := sign(b, method, priv, kid, claims("iss", iss))
	c := filtertest.NewCtx(b, bearerReq(tok))
	b.ReportAllocs()
	for b.Loop() {
		if f.OnRequest(c) != filter.Continue {
			b.Fatalf("refused: %v", c.Err())
		}
	}
}

// BenchmarkAcceptCached is the steady state: a client presenting the same token again.
func BenchmarkAcceptCached(b *testing.B) {
	testKeys(b)
	benchAccept(b, "", gojwt.SigningMethodRS256, rsaPriv, "rsa1", "https://idp.test")
}

// The first sight of a token (cache_size: 0 verifies every request): the cost per algorithm.
func BenchmarkAcceptUncachedRS256(b *testing.B) {
	testKeys(b)
	benchAccept(b, "cache_size: 0", gojwt.SigningMethodRS256, rsaPriv, "rsa1", "https://idp.test")
}

func BenchmarkAcceptUncachedES256(b *testing.B) {
	testKeys(b)
	benchAccept(b, "cache_size: 0", gojwt.SigningMethodES256, ecPriv, "ec1", "https://idp.test")
}

func BenchmarkAcceptUncachedEdDSA(b *testing.B) {
	testKeys(b)
	benchAccept(b, "cache_size: 0", gojwt.SigningMethodEdDSA, edPriv, "ed1", "https://idp.test")
}

func BenchmarkAcceptUncachedHS256(b *testing.B) {
	testKeys(b)
	benchAccept(b, "cache_size: 0", gojwt.SigningMethodHS256, []byte(hsSecret), "hs1", "https://hs.test")
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}
