package engine

// The jwt filter through the real gateway: a test identity provider on 127.0.0.1 serves a JWKS
// the tests rotate, a raw recording upstream keeps every byte it receives, and every refusal
// checks that the upstream received nothing.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
)

// jwtIDP serves a JWKS of the keys the test puts in it and counts the fetches.
type jwtIDP struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int64
}

func startJWTIDP(t *testing.T) *jwtIDP {
	t.Helper()
	p := &jwtIDP{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=3600")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *jwtIDP) publish(keys ...map[string]string) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

func jwkRSA(kid string, pub *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

func jwkEC(kid string, pub *ecdsa.PublicKey) map[string]string {
	b, _ := pub.Bytes()
	n := (len(b) - 1) / 2
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(b[1 : 1+n]), "y": base64.RawURLEncoding.EncodeToString(b[1+n:])}
}

const jwtGatewayConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 2s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, idle_timeout: 5s }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: be
    filters:
      - jwt:
          issuers:
            - issuer: https://idp.test
              audiences: [api]
              algorithms: [RS256, ES256]
              jwks_url: %q
              jwks: { refresh_throttle: %s }
          forward_claims: { sub: X-User-Id }
`

func startJWTGateway(t *testing.T, idp *jwtIDP, throttle string) (*recorder, string) {
	t.Helper()
	rec := startRecorder(t)
	cfg, err := parseConfig("jwt.yaml", []byte(fmt.Sprintf(jwtGatewayConfig, rec.ln.Addr().String(), idp.srv.URL, throttle)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return rec, serve(t, e)
}

func jwtToken(t testing.TB, m gojwt.SigningMethod, priv any, kid string, claims gojwt.MapClaims) string {
	t.Helper()
	tk := gojwt.NewWithClaims(m, claims)
	if kid != "" {
		tk.Header["kid"] = kid
	}
	s, err := tk.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtClaims(kv ...any) gojwt.MapClaims {
	c := gojwt.MapClaims{"iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func jwtGet(token string, extra ...string) string {
	req := "GET /api/orders HTTP/1.1\r\nHost: api.test\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	for _, h := range extra {
		req += h + "\r\n"
	}
	return req + "\r\n"
}

func TestFrontdoorJWT(t *testing.T) {
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := startJWTIDP(t)
	idp.publish(jwkRSA("k1", &k1.PublicKey))
	rec, addr := startJWTGateway(t, idp, "30s")
	conn, br := dial(t, addr)

	good := jwtToken(t, gojwt.SigningMethodRS256, k1, "k1", jwtClaims())
	t.Run("accepted, forged identity headers replaced", func(t *testing.T) {
		ex := send(t, conn, br, jwtGet(good, "X-User-Id: mallory", "x-user-id: eve"))
		if ex.status != 200 {
			t.Fatalf("status %d, body %q", ex.status, ex.body)
		}
		got := rec.take()
		if len(got) != 1 {
			t.Fatalf("upstream received %d requests, want 1", len(got))
		}
		lower := strings.ToLower(got[0])
		if strings.Count(lower, "x-user-id:") != 1 || !strings.Contains(got[0], "X-User-Id: alice\r\n") ||
			strings.Contains(lower, "mallory") || strings.Contains(lower, "eve\r\n") {
			t.Errorf("upstream request:\n%s", got[0])
		}
	})

	pemDER := func() []byte { b, _ := json.Marshal(jwkRSA("k1", &k1.PublicKey)); return b }()
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	rejections := []struct {
		name   string
		req    string
		status int
	}{
		{"no token", jwtGet(""), 401},
		{"alg none", jwtGet(b64([]byte(`{"alg":"none","kid":"k1"}`)) + "." + parts[1] + "."), 401},
		{"HS256 keyed with the RSA public key", jwtGet(jwtToken(t, gojwt.SigningMethodHS256, pemDER, "k1", jwtClaims())), 401},
		{"expired", jwtGet(jwtToken(t, gojwt.SigningMethodRS256, k1, "k1", jwtClaims("exp", time.Now().Add(-time.Hour).Unix()))), 401},
		{"not yet valid", jwtGet(jwtToken(t, gojwt.SigningMethodRS256, k1, "k1", jwtClaims("nbf", time.Now().Add(time.Hour).Unix()))), 401},
		{"wrong audience", jwtGet(jwtToken(t, gojwt.SigningMethodRS256, k1, "k1", jwtClaims("aud", "billing"))), 401},
		{"wrong issuer", jwtGet(jwtToken(t, gojwt.SigningMethodRS256, k1, "k1", jwtClaims("iss", "https://evil.test"))), 401},
		{"unknown kid", jwtGet(jwtToken(t, gojwt.SigningMethodRS256, k1, "zz", jwtClaims())), 401},
		{"signature altered", jwtGet(parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))), 401},
		{"malformed", jwtGet("abc.def"), 401},
		{"oversized", jwtGet(good + strings.Repeat("A", 9000)), 401},
		{"two Authorization headers", jwtGet(good, "Authorization: Bearer "+parts[0]+"."+parts[1]+".x"), 400},
		{"lower-case header name duplicate", jwtGet(good, "authorization: Bearer x.y.z"), 400},
	}
	for _, tt := range rejections {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dial(t, addr)
			ex := send(t, c, br, tt.req)
			if ex.status != tt.status {
				t.Errorf("status %d, want %d", ex.status, tt.status)
			}
			if strings.Contains(ex.body, good) {
				t.Errorf("body echoes the token")
			}
			if got := rec.take(); len(got) != 0 {
				t.Errorf("upstream received:\n%s", got[0])
			}
		})
	}
}

// TestFrontdoorJWTRotation: the identity provider replaces its key; a token signed with the new
// key passes after one refresh; the old key's tokens stop passing.
func TestFrontdoorJWTRotation(t *testing.T) {
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idp := startJWTIDP(t)
	idp.publish(jwkRSA("k1", &k1.PublicKey))
	// A throttle of 1s: the refresh a new kid asks for comes within a second, and a second
	// refresh cannot slip in before the check below.
	rec, addr := startJWTGateway(t, idp, "1s")
	conn, br := dial(t, addr)
	old := jwtToken(t, gojwt.SigningMethodRS256, k1, "k1", jwtClaims())
	if ex := send(t, conn, br, jwtGet(old)); ex.status != 200 {
		t.Fatalf("k1: status %d", ex.status)
	}
	rec.take()
	before := idp.fetches.Load()

	idp.publish(jwkEC("k2", &k2.PublicKey))
	fresh := jwtToken(t, gojwt.SigningMethodES256, k2, "k2", jwtClaims())
	deadline := time.Now().Add(5 * time.Second)
	for {
		ex := send(t, conn, br, jwtGet(fresh))
		if ex.status == 200 {
			break
		}
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("refused (%d) yet the upstream received:\n%s", ex.status, got[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key's token never passed (last status %d)", ex.status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := idp.fetches.Load() - before; n != 1 {
		t.Errorf("the new key took %d refreshes, want 1", n)
	}
	if got := rec.take(); len(got) != 1 {
		t.Fatalf("upstream received %d requests, want 1", len(got))
	}
	if ex := send(t, conn, br, jwtGet(old)); ex.status != 401 {
		t.Errorf("token of the withdrawn key: status %d, want 401", ex.status)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("upstream received:\n%s", got[0])
	}
}

// TestFrontdoorJWTKidFlood: 1,000 tokens with random kids, all refused, cost the identity
// provider at most one fetch beyond the first (the default 30s throttle).
func TestFrontdoorJWTKidFlood(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idp := startJWTIDP(t)
	idp.publish(jwkEC("real", &k.PublicKey))
	rec, addr := startJWTGateway(t, idp, "30s")
	before := idp.fetches.Load()
	conn, br := dial(t, addr)
	for i := 0; i < 1000; i++ {
		kid := fmt.Sprintf("random-%d-%d", i, time.Now().UnixNano())
		if ex := send(t, conn, br, jwtGet(jwtToken(t, gojwt.SigningMethodES256, k, kid, jwtClaims()))); ex.status != 401 {
			t.Fatalf("token %d: status %d", i, ex.status)
		}
	}
	time.Sleep(100 * time.Millisecond) // let a kicked refresh land, so it is counted
	if n := idp.fetches.Load() - before; n > 1 {
		t.Errorf("1,000 random kids caused %d JWKS fetches, want at most 1", n)
	}
	if got := rec.take(); len(got) != 0 {
		t.Errorf("upstream received %d requests", len(got))
	}
	if ex := send(t, conn, br, jwtGet(jwtToken(t, gojwt.SigningMethodES256, k, "real", jwtClaims()))); ex.status != 200 {
		t.Errorf("the real key's token after the flood: status %d", ex.status)
	}
}
