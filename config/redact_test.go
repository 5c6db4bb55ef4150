package config

import (
	"reflect"
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
		{"issuer", false}, {"audience", false}, {"rate", false},
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
		t.Fatalf("hash %q is not sha256 hex", h)
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
