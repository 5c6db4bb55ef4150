package jwt

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/weir-gateway/weir/core/filter"
)

// idp is a test identity provider serving a JWKS whose keys the test changes.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]string
	status  int
	cache   string
	fetches atomic.Int64
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{status: 200}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cache != "" {
			w.Header().Set("Cache-Control", p.cache)
		}
		if p.status != 200 {
			w.WriteHeader(p.status)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) set(keys ...map[string]string) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

func (p *idp) down(status int) {
	p.mu.Lock()
	p.status = status
	p.mu.Unlock()
}

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]string {
	b, _ := pub.Bytes() // 0x04 || x || y
	n := (len(b) - 1) / 2
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(b[1 : 1+n]), "y": base64.RawURLEncoding.EncodeToString(b[1+n:])}
}

func jwksConfig(url, jwks string) string {
	return fmt.Sprintf(`{issuers: [{issuer: "https://idp.test", audiences: [api], algorithms: [RS256, ES256], jwks_url: %q, jwks: {%s}}]}`, url, jwks)
}

// eventually polls cond for up to 5 s: long enough never to flake under load, and the
// conditions it waits for come within milliseconds when things work.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestJWKSRotation: the identity provider replaces its key; a token signed with the new key is
// refused until one throttled refresh, then accepted, and the old key's tokens stop passing.
func TestJWKSRotation(t *testing.T) {
	testKeys(t)
	p := newIDP(t)
	p.set(rsaJWK("k1", &rsaPriv.PublicKey))
	f := mustBuild(t, filter.Env{}, jwksConfig(p.srv.URL, "refresh_throttle: 300ms"))
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches after build: %d, want 1 (the first fetch)", n)
	}
	oldTok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "k1", claims())
	if c, ok := runTok(t, f, oldTok); !ok {
		t.Fatalf("k1 token refused: %v", c.Err())
	}

	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p.set(rsaJWK("k2", &newKey.PublicKey))
	newTok := sign(t, gojwt.SigningMethodRS256, newKey, "k2", claims())
	c, ok := runTok(t, f, newTok)
	if ok || c.Err() != errUnknownKid {
		t.Fatalf("k2 before refresh: reached %v, reason %v", ok, c.Err())
	}
	eventually(t, "the k2 token to pass", func() bool { _, ok := runTok(t, f, newTok); return ok })
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("fetches: %d, want 2 (first + one refresh)", n)
	}
	// k1 left the set: its token, although cached as verified, no longer passes.
	if c, ok := runTok(t, f, oldTok); ok || c.Err() != errUnknownKid {
		t.Errorf("k1 token after rotation: reached %v, reason %v", ok, c.Err())
	}
}

// TestJWKSKidFlood: 1,000 tokens with random kids cost at most one refresh per throttle
// interval, whatever their rate.
func TestJWKSKidFlood(t *testing.T) {
	testKeys(t)
	p := newIDP(t)
	p.set(rsaJWK("k1", &rsaPriv.PublicKey))
	f := mustBuild(t, filter.Env{}, jwksConfig(p.srv.URL, ""))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 125; i++ {
				tok := sign(t, gojwt.SigningMethodES256, ecPriv, fmt.Sprintf("rnd-%d-%d", w, i), claims())
				if c, ok := runTok(t, f, tok); ok || c.Err() != errUnknownKid {
					t.Errorf("random kid: reached %v, reason %v", ok, c.Err())
					return
				}
			}
		}(w)
	}
	wg.Wait()
	// Give a refresh that was kicked time to happen, so it is counted.
	time.Sleep(50 * time.Millisecond)
	if n := p.fetches.Load(); n > 2 {
		t.Errorf("1,000 random kids caused %d fetches, want at most 2 (first + one refresh)", n)
	}
	if c, ok := runTok(t, f, sign(t, gojwt.SigningMethodRS256, rsaPriv, "k1", claims())); !ok {
		t.Errorf("the real key's token refused after the flood: %v", c.Err())
	}
}

// TestJWKSServerDown: failed refreshes keep the last good key set.
func TestJWKSServerDown(t *testing.T) {
	testKeys(t)
	p := newIDP(t)
	p.set(rsaJWK("k1", &rsaPriv.PublicKey), ecJWK("e1", &ecPriv.PublicKey))
	f := mustBuild(t, filter.Env{}, jwksConfig(p.srv.URL, "refresh_throttle: 10ms, min_refresh: 10ms, max_refresh: 20ms"))
	tok := sign(t, gojwt.SigningMethodES256, ecPriv, "e1", claims())
	for _, status := range []int{500, 404} {
		p.down(status)
		before := p.fetches.Load()
		eventually(t, "failed refreshes", func() bool { return p.fetches.Load() >= before+2 })
		if c, ok := runTok(t, f, tok); !ok {
			t.Fatalf("server answering %d: token refused: %v", status, c.Err())
		}
	}
	// A body that is not a key set, or one with no usable key, is a failure too.
	p.down(200)
	p.set(map[string]string{"kty": "oct", "kid": "s", "k": base64.RawURLEncoding.EncodeToString(make([]byte, 32))})
	before := p.fetches.Load()
	eventually(t, "refreshes", func() bool { return p.fetches.Load() >= before+2 })
	if c, ok := runTok(t, f, tok); !ok {
		t.Fatalf("after a set of only symmetric keys: token refused: %v", c.Err())
	}
}

// TestJWKSFirstFetchFails: a gateway starting while the identity provider is down refuses
// that issuer's tokens, then serves them once a fetch succeeds.
func TestJWKSFirstFetchFails(t *testing.T) {
	testKeys(t)
	p := newIDP(t)
	p.down(503)
	f := mustBuild(t, filter.Env{}, jwksConfig(p.srv.URL, "refresh_throttle: 10ms, min_refresh: 10ms"))
	tok := sign(t, gojwt.SigningMethodRS256, rsaPriv, "k1", claims())
	if c, ok := runTok(t, f, tok); ok || c.Err() != errNoKeys {
		t.Fatalf("before any key set: reached %v, reason %v", ok, c.Err())
	}
	p.set(rsaJWK("k1", &rsaPriv.PublicKey))
	p.down(200)
	eventually(t, "the token to pass", func() bool { _, ok := runTok(t, f, tok); return ok })
}

func TestJWKSOversized(t *testing.T) {
	testKeys(t)
	p := newIDP(t)
	p.set(rsaJWK("k1", &rsaPriv.PublicKey))
	f := mustBuild(t, filter.Env{}, jwksConfig(p.srv.URL, "max_bytes: 100"))
	if c, ok := runTok(t, f, sign(t, gojwt.SigningMethodRS256, rsaPriv, "k1", claims())); ok || c.Err() != errNoKeys {
		t.Fatalf("reached %v, reason %v", ok, c.Err())
	}
}

// TestJWKSShared: routes and snapshots using one URL share one fetcher, which stops with the
// last of them, leaving no goroutine behind.
func TestJWKSShared(t *testing.T) {
	testKeys(t)
	p := newIDP(t)
	p.set(rsaJWK("k1", &rsaPriv.PublicKey))
	base := runtime.NumGoroutine()
	shared := filter.NewShared()
	cfg := jwksConfig(p.srv.URL, "")
	var fs []*Filter
	for i := 0; i < 5; i++ {
		f, err := build(t, filter.Env{Shared: shared}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	if shared.Len() != 1 || p.fetches.Load() != 1 {
		t.Fatalf("5 filters: %d shared values, %d fetches; want 1 and 1", shared.Len(), p.fetches.Load())
	}
	for _, f := range fs {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if shared.Len() != 0 {
		t.Fatalf("after close: %d shared values", shared.Len())
	}
	p.srv.CloseClientConnections()
	eventually(t, "the fetcher's goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

func TestCacheLifetime(t *testing.T) {
	o := fetchOptions{minRefresh: time.Minute, maxRefresh: time.Hour}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, defaultRefresh},
		{"max-age", http.Header{"Cache-Control": {"public, max-age=600"}}, 10 * time.Minute},
		{"max-age less Age", http.Header{"Cache-Control": {"max-age=600"}, "Age": {"120"}}, 8 * time.Minute},
		{"max-age below min", http.Header{"Cache-Control": {"max-age=5"}}, time.Minute},
		{"max-age above max", http.Header{"Cache-Control": {"max-age=86400"}}, time.Hour},
		{"no-store", http.Header{"Cache-Control": {"no-store"}}, time.Minute},
		{"no-cache wins", http.Header{"Cache-Control": {"max-age=600, no-cache"}}, time.Minute},
		{"bad max-age", http.Header{"Cache-Control": {"max-age=x"}}, defaultRefresh},
		{"expires", http.Header{"Expires": {now.Add(20 * time.Minute).Format(http.TimeFormat)}, "Date": {date}}, 20 * time.Minute},
		{"expires without date", http.Header{"Expires": {now.Add(20 * time.Minute).Format(http.TimeFormat)}}, 20 * time.Minute},
		{"invalid expires", http.Header{"Expires": {"0"}}, time.Minute},
		{"max-age beats expires", http.Header{"Cache-Control": {"max-age=300"}, "Expires": {now.Add(50 * time.Minute).Format(http.TimeFormat)}}, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := cacheLifetime(tt.h, now, o); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	testKeys(t)
	good := rsaJWK("a", &rsaPriv.PublicKey)
	enc := func(ks ...map[string]string) []byte { b, _ := json.Marshal(map[string]any{"keys": ks}); return b }
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for a, b := range m {
			out[a] = b
		}
		out[k] = v
		return out
	}
	ec := ecJWK("e", &ecPriv.PublicKey)
	offCurve := with(ec, "y", ec["x"])
	tests := []struct {
		name    string
		data    []byte
		keys    int
		skipped string
	}{
		{"good", enc(good, ec), 2, ""},
		{"encryption key", enc(with(good, "use", "enc")), 0, "use"},
		{"alg of another family", enc(with(good, "alg", "ES256")), 0, "does not suit"},
		{"alg of a wrong curve", enc(with(ec, "alg", "ES384")), 0, "does not suit"},
		{"RSA without n", enc(map[string]string{"kty": "RSA", "e": "AQAB"}), 0, "missing member"},
		{"off-curve point", enc(offCurve), 0, "EC point"},
		{"oct from a URL", enc(map[string]string{"kty": "oct", "k": base64.RawURLEncoding.EncodeToString(make([]byte, 32))}), 0, "symmetric"},
		{"duplicate kid", enc(good, with(ec, "kid", "a")), 1, "twice"},
		{"small RSA", enc(with(good, "n", base64.RawURLEncoding.EncodeToString(make([]byte, 128)))), 0, "bits"},
		{"even exponent", enc(with(good, "e", "Ag")), 0, "odd"},
		{"unknown kty", enc(map[string]string{"kty": "XYZ"}), 0, "kty"},
	}
	for _, tt := range tests {
		keys, skipped, err := parseJWKS(tt.data, false)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if len(keys) != tt.keys {
			t.Errorf("%s: %d keys, want %d (skipped %v)", tt.name, len(keys), tt.keys, skipped)
		}
		if tt.skipped != "" && (len(skipped) == 0 || !strings.Contains(fmt.Sprint(skipped), tt.skipped)) {
			t.Errorf("%s: skipped %v, want a reason containing %q", tt.name, skipped, tt.skipped)
		}
	}
	for _, bad := range []string{``, `[]`, `{}`, `{"keys":{}}`} {
		if _, _, err := parseJWKS([]byte(bad), false); err == nil {
			t.Errorf("%q: parsed", bad)
		}
	}
}
