package config

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestRedacted(t *testing.T) {
	c := mustParse(t, `
server: { admin_token: hunter2 }
upstreams: { u: { targets: ["a:1"] } }
routes:
  - name: r
    upstream: u
    filters:
      - jwt: { issuer: https://idp, Client_Secret: s, nested: { API_KEY: k, keep: v, list: [ { password: p, user: x } ] }, token_ttl: 5 }
      - cors:
`)
	r := c.Redacted()
	if r.Server.AdminToken != Redaction {
		t.Errorf("admin_token = %q", r.Server.AdminToken)
	}
	want := map[string]any{
		"issuer":        "https://idp",
		"Client_Secret": Redaction,
		"nested": map[string]any{"API_KEY": Redaction, "keep": "v",
			"list": []any{map[string]any{"password": Redaction, "user": "x"}}},
		"token_ttl": Redaction,
	}
	if got := r.Routes[0].Filters[0].Config; !reflect.DeepEqual(got, want) {
		t.Errorf("redacted config = %#v\nwant             %#v", got, want)
	}
	if r.Routes[0].Filters[1].Config != nil {
		t.Errorf("nil config became %#v", r.Routes[0].Filters[1].Config)
	}
	// The original is untouched.
	if c.Server.AdminToken != "hunter2" || c.Routes[0].Filters[0].Config["Client_Secret"] != "s" ||
		c.Routes[0].Filters[0].Config["nested"].(map[string]any)["API_KEY"] != "k" {
		t.Error("Redacted modified the original config")
	}
	if c.Hash != r.Hash {
		t.Error("Redacted changed Hash; it must still identify the config it came from")
	}
	var nilCfg *Config
	if nilCfg.Redacted() != nil {
		t.Error("nil.Redacted() != nil")
	}
	if e := (&Config{}).Redacted(); e.Server.AdminToken != "" {
		t.Error("empty admin token became non-empty")
	}
}

func TestIsSecretKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"api_key", true}, {"client_secret", true}, {"Password", true}, {"TOKEN", true}, {"keys_file", true},
		// Header names, in any case.
		{"Authorization", true}, {"proxy-authorization", true}, {"COOKIE", true}, {"Set-Cookie", true},
		{"X-Api-Key", true}, {"x-auth-token", true}, {"X-Auth", true}, {"X-Amz-Security-Token", true},
		{"X-Session-Id", true}, {"X-Hub-Signature", true}, {"aws_credentials", true},
		{"issuer", false}, {"audience", false}, {"rate", false}, {"oauth_issuer", false}, {"authority", false},
		{"X-Request-Id", false}, {"Content-Type", false}, {"Cache-Control", false}, {"X-Authored-By", false},
	}
	for _, tt := range tests {
		if got := IsSecretKey(tt.key); got != tt.want {
			t.Errorf("IsSecretKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

func TestHash(t *testing.T) {
	const a = `
upstreams: { u: { targets: ["a:1"] } }
routes: [ { name: r, upstream: u, filters: [ { x: { b: 1, a: 2 } } ] } ]
`
	// The same config, formatted and ordered differently, with defaults written out.
	const aReformatted = `
# comment
routes:
  - upstream: u
    name: r
    filters:
      - x: { a: 2, b: 1 }
upstreams:
  u:
    targets: [ "a:1" ]
    balance: round_robin
server:
  listen: ":8080"
`
	const changed = `
upstreams: { u: { targets: ["a:1"] } }
routes: [ { name: r, upstream: u, filters: [ { x: { b: 1, a: 3 } } ] } ]
`
	h := mustParse(t, a).Hash
	if len(h) != 64 {
		t.Fatalf("hash %q is not 256 bits in hex", h)
	}
	if again := mustParse(t, a).Hash; again != h {
		t.Errorf("hash not stable: %s then %s", h, again)
	}
	if got := mustParse(t, aReformatted).Hash; got != h {
		t.Errorf("reformatted config hashes %s, want %s", got, h)
	}
	if got := mustParse(t, changed).Hash; got == h {
		t.Error("changed filter config has the same hash")
	}
	t.Setenv("WEIR_SERVER_VIA", "other")
	if got := mustParse(t, a).Hash; got == h {
		t.Error("environment override did not change the hash")
	}
}

// TestRedactedSecretValues: secrets are found by the header or key they are under and by their
// shape, in route matches, filter configs and plugin configs, at any depth.
func TestRedactedSecretValues(t *testing.T) {
	const jwtValue = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
	c := mustParse(t, `
upstreams: { u: { targets: ["a:1"] } }
routes:
  - name: r
    upstream: u
    match: { path_prefix: /v1/, headers: { x-internal-auth: s3cret-route, X-Tenant: acme, AUTHORIZATION: "*" } }
    filters:
      - headers:
          request:
            set:
              Authorization: Bearer upstream-s3cret
              proxy-authorization: Basic dXNlcjpwYXNz
              COOKIE: sid=abc123
              X-Api-Key: k-123456
              X-Forwarded-Proto: https
              X-Trace: `+jwtValue+`
            add: { x-auth-token: [one-secret, two-secret], Accept: application/json }
          response:
            set: { Cache-Control: no-store, WWW-Authenticate: 'Basic realm="api"' }
      - respond: { status: 200, body: ok, headers: { Set-Cookie: "s=1" } }
`)
	r := c.Redacted()
	got := r.Routes[0]
	wantMatch := map[string]string{"x-internal-auth": Redaction, "X-Tenant": "acme", "AUTHORIZATION": "*"}
	if !reflect.DeepEqual(got.Match.Headers, wantMatch) {
		t.Errorf("match.headers = %v, want %v", got.Match.Headers, wantMatch)
	}
	wantHeaders := map[string]any{
		"request": map[string]any{
			"set": map[string]any{
				"Authorization": Redaction, "proxy-authorization": Redaction, "COOKIE": Redaction,
				"X-Api-Key": Redaction, "X-Forwarded-Proto": "https", "X-Trace": Redaction,
			},
			"add": map[string]any{"x-auth-token": Redaction, "Accept": "application/json"},
		},
		"response": map[string]any{
			"set": map[string]any{"Cache-Control": "no-store", "WWW-Authenticate": `Basic realm="api"`},
		},
	}
	if !reflect.DeepEqual(got.Filters[0].Config, wantHeaders) {
		t.Errorf("headers filter config =\n%#v\nwant\n%#v", got.Filters[0].Config, wantHeaders)
	}
	if h := got.Filters[1].Config["headers"].(map[string]any)["Set-Cookie"]; h != Redaction {
		t.Errorf("respond Set-Cookie = %v, want redacted", h)
	}
	if c.Routes[0].Match.Headers["x-internal-auth"] != "s3cret-route" {
		t.Error("Redacted modified the original match headers")
	}

	// Plugin configs: by key and by shape, at any depth.
	pc := &Config{Plugins: map[string]Plugin{"p": {File: "p.wasm", SHA256: strings.Repeat("ab", 32), Config: map[string]any{
		"upstream": map[string]any{"headers": map[string]any{"Authorization": "Token abc"}, "aws": "AKIAIOSFODNN7EXAMPLE"},
		"list":     []any{"Bearer xyz.abc", "plain", map[string]any{"ClientSecret": "x"}},
		"greeting": "hello world", "ttl": "30s",
	}}}}
	wantPlugin := map[string]any{
		"upstream": map[string]any{"headers": map[string]any{"Authorization": Redaction}, "aws": Redaction},
		"list":     []any{Redaction, "plain", map[string]any{"ClientSecret": Redaction}},
		"greeting": "hello world", "ttl": "30s",
	}
	rp := pc.Redacted().Plugins["p"]
	if !reflect.DeepEqual(rp.Config, wantPlugin) {
		t.Errorf("plugin config =\n%#v\nwant\n%#v", rp.Config, wantPlugin)
	}
	if rp.SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("plugin sha256 pin hidden: %q", rp.SHA256)
	}
}

// TestRedactText tries credentials in the shapes they take in configs and in error messages,
// and ordinary values that must stay readable.
func TestRedactText(t *testing.T) {
	tests := []struct{ in, want string }{
		// The reproduction: a header value quoted with %q in an error.
		{`value "Bearer upstream-s3cret\n"`, `value "Bearer [redacted]\n"`},
		{"Bearer upstream-s3cret", "Bearer [redacted]"},
		{"bearer abc", "bearer [redacted]"},
		{"BEARER  abc/def+ghi==", "BEARER  [redacted]"},
		{`"Bearer\tabc"`, `"Bearer\t[redacted]"`},
		{"Basic dXNlcjpwYXNz", "Basic [redacted]"},
		{"basic dXNlcjpwYXNz", "basic [redacted]"},
		{"Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==, next", "Authorization: Basic [redacted], next"},
		{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_-abc", Redaction},
		{"token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.", "token " + Redaction},
		{"key AKIAIOSFODNN7EXAMPLE here", "key [redacted] here"},
		{"ghp_0123456789abcdefghijABCDEFGHIJ012345", Redaction},
		{"xoxb-1234567890-abcdefghij", Redaction},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", Redaction},
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\n-----END RSA PRIVATE KEY-----", Redaction},
		{"https://user:pa55word@example.com/x", "https://user:[redacted]@example.com/x"},
		{"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", Redaction},
		{`api key "Zt8pQ2xV9mLk4RbN7cWy1HsJ" rejected`, `api key "[redacted]" rejected`},
		// Ordinary values.
		{"Basic realm=\"api\"", "Basic realm=\"api\""},
		{"basic authentication is required", "basic authentication is required"},
		{"bearer", "bearer"},
		{"/tmp/TestReloadRejected2873465123/001/weir.yaml", "/tmp/TestReloadRejected2873465123/001/weir.yaml"},
		{"plugins/AddHeader2/module_v10.wasm", "plugins/AddHeader2/module_v10.wasm"},
		{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000"},
		{"users-api-v2-production-eu-west-1", "users-api-v2-production-eu-west-1"},
		{"application/json; charset=utf-8", "application/json; charset=utf-8"},
		{"http://upstream.internal:8080/v1/", "http://upstream.internal:8080/v1/"},
		{"30s", "30s"},
		{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"},
		{"X-Forwarded-For", "X-Forwarded-For"},
		{"ConsecutiveConnectFailures", "ConsecutiveConnectFailures"},
	}
	for _, tt := range tests {
		if got := RedactText(tt.in); got != tt.want {
			t.Errorf("RedactText(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := RedactText(RedactText(tt.in)); got != tt.want {
			t.Errorf("RedactText is not idempotent on %q: %q", tt.in, got)
		}
	}
}

// TestRedactError: a config's own secrets are hidden from its error messages by their text,
// written and as %q quotes them, even where no pattern would recognise them; the problems keep
// their location and their cause.
func TestRedactError(t *testing.T) {
	c := mustParse(t, `
server: { admin_token: adm1n-t0ken }
upstreams: { u: { targets: ["a:1"] } }
routes:
  - name: r
    upstream: u
    filters:
      - headers: { request: { set: { X-Api-Key: "hunter2\n", Authorization: "Bearer upstream-s3cret\n" } } }
      - x: { password: "abc" }
`)
	cause := errors.New("boom")
	err := errors.Join(
		&Error{File: "weir.yaml", Line: 8, Path: "routes[0].filters[0]", Route: "r", Filter: "headers",
			Err: fmt.Errorf(`request: set: header "X-Api-Key": value %q is bad: %w`, "hunter2\n", cause)},
		&Error{File: "weir.yaml", Path: "routes[0].filters[0]", Err: fmt.Errorf("value %q", "Bearer upstream-s3cret\n")},
		fmt.Errorf("token adm1n-t0ken, raw hunter2\n, short abc"),
	)
	got := c.RedactError(err)
	text := got.Error()
	for _, secret := range []string{"hunter2", "upstream-s3cret", "adm1n-t0ken"} {
		if strings.Contains(text, secret) {
			t.Errorf("RedactError leaks %q:\n%s", secret, text)
		}
	}
	// Too short to hide by text without mangling every message; a pattern-less 3-byte secret
	// is not protected by anything anyway.
	if !strings.Contains(text, "short abc") {
		t.Errorf("short value hidden: %s", text)
	}
	errs := Errors(got)
	if len(errs) != 3 {
		t.Fatalf("got %d problems, want 3:\n%s", len(errs), text)
	}
	want0 := `weir.yaml:8: routes[0].filters[0] (route "r", filter "headers"): request: set: header "X-Api-Key": value "[redacted]" is bad: boom`
	if errs[0].Error() != want0 {
		t.Errorf("problem 0 = %s\nwant        %s", errs[0].Error(), want0)
	}
	if !errors.Is(got, cause) {
		t.Error("redacted error no longer unwraps to its cause")
	}
	if (*Config)(nil).RedactError(nil) != nil || c.RedactError(nil) != nil {
		t.Error("RedactError(nil) != nil")
	}
	// Without a config, patterns still apply.
	if s := (*Config)(nil).RedactError(errors.New(`value "Bearer upstream-s3cret\n"`)).Error(); s != `value "Bearer [redacted]\n"` {
		t.Errorf("nil config: %s", s)
	}
}

// TestErrorTextRedacted: every *Error hides credentials when formatted, however it was built.
func TestErrorTextRedacted(t *testing.T) {
	e := &Error{File: "weir.yaml", Line: 3, Path: "routes[0].filters[0]", Err: fmt.Errorf("value %q", "Bearer upstream-s3cret\n")}
	if got, want := e.Error(), `weir.yaml:3: routes[0].filters[0]: value "Bearer [redacted]\n"`; got != want {
		t.Errorf("Error() = %s, want %s", got, want)
	}
}

// TestParseErrorsRedacted: Load and Parse errors quote no secret of the config they reject.
func TestParseErrorsRedacted(t *testing.T) {
	const src = `
server: { admin_token: adm1n-t0ken, listen: "nope" }
upstreams: { u: { targets: ["https://user:pa55w0rd@a:1", "user:pa55w0rd@b:1"] } }
routes:
  - name: r
    upstream: u
    filters:
      - headers: { request: { set: { X-Api-Key: "hunter2-key" } } }
`
	leak := func(c *Config) error {
		// A check that quotes a secret value, as a careless filter factory might.
		return &Error{Path: "routes[0].filters[0]", Err: fmt.Errorf("bad key %q and token %q", "hunter2-key", "adm1n-t0ken")}
	}
	_, err := Parse("weir.yaml", []byte(src), leak)
	if err == nil {
		t.Fatal("config with a bad listen address parsed")
	}
	for _, secret := range []string{"hunter2-key", "adm1n-t0ken", "pa55w0rd"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse error leaks %q:\n%v", secret, err)
		}
	}
	if !strings.Contains(err.Error(), `server.listen: "nope" is not host:port`) {
		t.Errorf("ordinary problem lost: %v", err)
	}
}

// TestHashKeyed: the hash logged on every reload cannot be recomputed from the config alone, so
// it cannot be used to test guesses of the admin token offline.
func TestHashKeyed(t *testing.T) {
	const src = `
server: { admin_token: guessable }
upstreams: { u: { targets: ["a:1"] } }
routes: [ { name: r, upstream: u } ]
`
	c := mustParse(t, src)
	cp := *c
	cp.Hash = ""
	b, err := json.Marshal(&cp)
	if err != nil {
		t.Fatal(err)
	}
	plain := sha256.Sum256(b)
	if c.Hash == hex.EncodeToString(plain[:]) {
		t.Error("hash is the plain sha256 of the config; a guessed token can be checked against it")
	}
	for _, key := range [][]byte{nil, {}, []byte("weir"), make([]byte, 32)} {
		m := hmac.New(sha256.New, key)
		m.Write(b)
		if c.Hash == hex.EncodeToString(m.Sum(nil)) {
			t.Errorf("hash is an HMAC under the guessable key %q", key)
		}
	}
	// Still a change detector: a rotated secret changes it, an unchanged config does not.
	if mustParse(t, src).Hash != c.Hash {
		t.Error("unchanged config hashes differently within one process")
	}
	if mustParse(t, strings.Replace(src, "guessable", "rotated", 1)).Hash == c.Hash {
		t.Error("a rotated admin token does not change the hash, so a reload would not apply it")
	}
}
