package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bcryptOfPassword is the bcrypt hash (cost 4) of "password".
const bcryptOfPassword = "$2a$04$Acby42CDX2mJOLad0WdNAef/4uq3WRF7swPxGdhei6Krs9gy/EWmK"

func writeConsumers(t *testing.T, dir, consumers string) string {
	t.Helper()
	path := filepath.Join(dir, "weir.yaml")
	src := "server: { listen: \"127.0.0.1:0\", admin: \"\" }\nupstreams: { be: { kind: echo } }\n" +
		"routes: [ { name: r, upstream: be } ]\nconsumers:\n" + consumers
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func hexSum(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestConsumersDecode(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "alice.key"), []byte("alice-file-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConsumers(t, dir, `
  - name: alice
    groups: [admins]
    headers: { X-Tier: gold, x-Upstream-Token: abc123secretvalue }
    credentials:
      apikeys: [ { sha256: "SHA256:`+strings.ToUpper(hexSum("inline"))+`" }, { file: keys/alice.key } ]
      basic: [ { user: alice, bcrypt: "`+bcryptOfPassword+`" } ]
      jwt: [ { issuer: "https://idp", subject: alice } ]
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Consumers) != 1 {
		t.Fatalf("got %d consumers, want 1", len(c.Consumers))
	}
	k := c.Consumers[0]
	if got, want := k.Credentials.APIKeys[0].Digest, hexSum("inline"); got != want {
		t.Errorf("inline digest: got %s, want %s", got, want)
	}
	if got, want := k.Credentials.APIKeys[1].Digest, hexSum("alice-file-key"); got != want {
		t.Errorf("file digest (final newline ignored): got %s, want %s", got, want)
	}
	if k.Headers["x-Upstream-Token"] != "abc123secretvalue" {
		t.Errorf("header names keep their case: %v", k.Headers)
	}
	if got := c.ConsumerHeaderNames(); strings.Join(got, ",") != "X-Consumer-Groups,X-Consumer-Name,X-Tier,X-Upstream-Token" {
		t.Errorf("ConsumerHeaderNames = %v", got)
	}

	// Shown configs hide bcrypt hashes, digests of key files and secret header values.
	b, _ := json.Marshal(c.Redacted())
	for _, secret := range []string{bcryptOfPassword, hexSum("alice-file-key"), "abc123secretvalue"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("Redacted shows %q:\n%s", secret, b)
		}
	}
	if !strings.Contains(string(b), hexSum("inline")) {
		t.Errorf("Redacted hides the inline sha256, which is in the file as written")
	}
	if c.Consumers[0].Credentials.Basic[0].Bcrypt != bcryptOfPassword {
		t.Errorf("Redacted changed the original")
	}

	// A changed key file changes the hash, so a reload picks it up.
	if err := os.WriteFile(filepath.Join(dir, "keys", "alice.key"), []byte("rotated-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Hash == c.Hash {
		t.Errorf("hash unchanged after the key file changed")
	}
}

func TestConsumersErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("empty.key", "\n\n")
	write("spaced.key", "two words-secretvalue")
	write("big.key", strings.Repeat("k", maxKeyFileBytes+1))
	write("ok.key", "the-one-key")
	tests := []struct{ consumers, want string }{
		{`{ name: a }`, "consumers: expected a list of consumers"},
		{`[ { groups: [x] } ]`, "consumers[0].name: is missing"},
		{`[ { name: "a b" } ]`, `consumers[0].name: "a b": use letters`},
		{`[ { name: a }, { name: a } ]`, `consumers[1].name: consumer "a" is declared twice (also consumers[0])`},
		{`[ { name: a, groups: [x, "y,z"] } ]`, `consumers[0].groups[1]: "y,z"`},
		{`[ { name: a, groups: [x, x] } ]`, `consumers[0].groups[1]: group "x" is listed twice`},
		{`[ { name: a, headers: { "X A": v } } ]`, "not an RFC 9110 token"},
		{`[ { name: a, headers: { x-consumer-groups: v } } ]`, "is set by the gateway"},
		{`[ { name: a, headers: { Host: v } } ]`, "is set by the gateway"},
		{`[ { name: a, headers: { X-A: v, x-a: w } } ]`, "given twice"},
		{`[ { name: a, headers: { X-A: "v\r\nX-B: w" } } ]`, "control byte"},
		{`[ { name: a, headers: { X-A: 1 } } ]`, "expected a string"},
		{`[ { name: a, credentials: { apikeys: [ {} ] } } ]`, "apikeys[0]: give sha256"},
		{`[ { name: a, credentials: { apikeys: [ { sha256: abc, file: ok.key } ] } } ]`, "not both"},
		{`[ { name: a, credentials: { apikeys: [ { sha256: my-plain-key-by-mistake } ] } } ]`, "not a hex SHA-256"},
		{`[ { name: a, credentials: { apikeys: [ { file: missing.key } ] } } ]`, "no such file"},
		{`[ { name: a, credentials: { apikeys: [ { file: empty.key } ] } } ]`, "empty.key: empty"},
		{`[ { name: a, credentials: { apikeys: [ { file: spaced.key } ] } } ]`, "has a space"},
		{`[ { name: a, credentials: { apikeys: [ { file: big.key } ] } } ]`, "larger than 4096 bytes"},
		{`[ { name: a, credentials: { apikeys: [ { file: ok.key }, { sha256: "` + hexSum("the-one-key") + `" } ] } } ]`,
			"apikeys[1]: the same API key is also consumers[0].credentials.apikeys[0]"},
		{`[ { name: a, credentials: { basic: [ { user: "a:b", bcrypt: "` + bcryptOfPassword + `" } ] } } ]`, "no ':'"},
		{`[ { name: a, credentials: { basic: [ { user: u } ] } } ]`, "bcrypt: is missing"},
		{`[ { name: a, credentials: { basic: [ { user: u, bcrypt: "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=" } ] } } ]`, "not a bcrypt hash"},
		{`[ { name: a, credentials: { basic: [ { user: u, bcrypt: "$2y$10$short" } ] } } ]`, "malformed bcrypt hash"},
		{`[ { name: a, credentials: { basic: [ { user: u, bcrypt: "` + bcryptOfPassword + `" } ] } }, { name: b, credentials: { basic: [ { user: u, bcrypt: "` + bcryptOfPassword + `" } ] } } ]`,
			`consumers[1].credentials.basic[0].user: user "u" is also consumers[0].credentials.basic[0]`},
		{`[ { name: a, credentials: { jwt: [ { issuer: i } ] } } ]`, "needs both issuer and subject"},
		{`[ { name: a, credentials: { jwt: [ { issuer: i, subject: s }, { issuer: i, subject: s } ] } } ]`, "jwt[1]: issuer"},
		{`[ { name: a, credentials: { apikey: [] } } ]`, `unknown key "apikey"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Load(writeConsumers(t, dir, "  "+tt.consumers))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			for _, secret := range []string{"secretvalue", "the-one-key", "my-plain-key", "W6ph5Mm5", "$2y$10$short", "v\r\n"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error quotes a secret: %v", err)
				}
			}
		})
	}
}
