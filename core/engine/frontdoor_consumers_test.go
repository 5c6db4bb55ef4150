package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/core/filter"
)

// testLogin is a filter for these tests only: it authenticates every request as the consumer
// named in its config, so the engine's consumer wiring is tested apart from any auth filter.
type testLogin struct{ k *filter.Consumer }

func (f *testLogin) OnRequest(c *filter.Ctx) filter.Status {
	c.SetConsumer(f.k)
	return filter.Continue
}
func (f *testLogin) OnResponse(*filter.Ctx) {}

func init() {
	filter.Register("test-login", func(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
		var cfg struct {
			Consumer string `mapstructure:"consumer"`
		}
		if err := decode(&cfg); err != nil {
			return nil, err
		}
		k := env.Consumers.Named(cfg.Consumer)
		if k == nil {
			return nil, fmt.Errorf("consumer %q is not declared", cfg.Consumer)
		}
		return &testLogin{k: k}, nil
	})
}

const consumersConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, trusted_proxies: [%s] }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q] }
consumers:
  - name: alice
    groups: [admins, ops]
    headers: { X-Tier: gold, x-team: payments }
    credentials: { apikeys: [ { sha256: "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" } ] }
  - name: bob
routes:
  - name: login
    match: { path_prefix: /login }
    upstream: be
    filters:
      - test-login: { consumer: alice }
  - name: bob
    match: { path_prefix: /bob }
    upstream: be
    filters:
      - test-login: { consumer: bob }
  - name: open
    match: { path_prefix: /open }
    upstream: be
`

// startConsumers runs the gateway on consumersConfig in front of a recording upstream.
func startConsumers(t *testing.T, trusted string) (*recorder, string) {
	t.Helper()
	rec := startRecorder(t)
	cfg, err := parseConfig("consumers.yaml", []byte(fmt.Sprintf(consumersConfig, trusted, rec.ln.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return rec, serve(t, e)
}

// forged are client-written spellings of the headers only the gateway may set.
const forged = "X-Consumer-Name: mallory\r\nx-consumer-name: mallory2\r\nX_Consumer_Name: mallory3\r\n" +
	"X-CONSUMER-GROUPS: root\r\nX_consumer_groups: root\r\nX-Tier: platinum\r\nX-Team: ops\r\nx_team: ops\r\n"

// TestConsumerHeadersUpstream checks what the upstream receives about the caller: exactly the
// authenticated consumer's headers, once each, whatever the client wrote, from an untrusted
// peer and from a trusted proxy alike.
func TestConsumerHeadersUpstream(t *testing.T) {
	for _, trusted := range []string{"", `"127.0.0.1"`} {
		t.Run("trusted="+trusted, func(t *testing.T) {
			rec, addr := startConsumers(t, trusted)
			conn, br := dial(t, addr)
			tests := []struct {
				path string
				want map[string]string // field -> value; "" means absent
			}{
				{"/login", map[string]string{"X-Consumer-Name": "alice", "X-Consumer-Groups": "admins,ops", "X-Tier": "gold", "X-Team": "payments"}},
				{"/bob", map[string]string{"X-Consumer-Name": "bob", "X-Consumer-Groups": "", "X-Tier": "", "X-Team": ""}},
				{"/open", map[string]string{"X-Consumer-Name": "", "X-Consumer-Groups": "", "X-Tier": "", "X-Team": ""}},
			}
			for _, tt := range tests {
				ex := send(t, conn, br, "GET "+tt.path+" HTTP/1.1\r\nHost: h\r\n"+forged+"\r\n")
				if ex.status != 200 {
					t.Fatalf("%s: status %d, want 200", tt.path, ex.status)
				}
				got := rec.take()
				if len(got) != 1 {
					t.Fatalf("%s: upstream got %d requests, want 1", tt.path, len(got))
				}
				for name, want := range tt.want {
					vals := fieldsNamed(got[0], name)
					switch {
					case want == "" && len(vals) != 0:
						t.Errorf("%s: upstream got %s: %q, want none", tt.path, name, vals)
					case want != "" && (len(vals) != 1 || vals[0] != want):
						t.Errorf("%s: upstream got %s: %q, want exactly [%q]", tt.path, name, vals, want)
					}
				}
				if strings.Contains(strings.ToLower(got[0]), "mallory") || strings.Contains(got[0], "root") ||
					strings.Contains(got[0], "platinum") || strings.Contains(strings.ToLower(got[0]), "x_") {
					t.Errorf("%s: a client-written consumer header reached the upstream:\n%s", tt.path, got[0])
				}
			}
		})
	}
}

// fieldsNamed returns the values of every field of raw named name, where '_' counts as '-' and
// case is ignored (the upstream frameworks that fold names that way are the reason to test it).
func fieldsNamed(raw, name string) []string {
	var out []string
	want := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	for _, line := range strings.Split(raw, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.ToLower(strings.ReplaceAll(k, "_", "-")) == want {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestConsumersConfigErrors checks that a broken consumers section is refused as a whole, with
// the key path and never the secret.
func TestConsumersConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k.key")
	if err := os.WriteFile(keyFile, []byte("s3cr3t-k3y-V4lue-never-shown\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ consumers, want string }{
		{`[ { name: a, credentials: { apikeys: [ { file: k.key } ] } }, { name: b, credentials: { apikeys: [ { file: k.key } ] } } ]`,
			"consumers[1].credentials.apikeys[0]: the same API key is also consumers[0].credentials.apikeys[0]"},
		{`[ { name: a }, { name: a } ]`, `consumers[1].name: consumer "a" is declared twice`},
		{`[ { name: a, credentials: { basic: [ { user: u, bcrypt: "$apr1$abc$def" } ] } } ]`, "consumers[0].credentials.basic[0].bcrypt: not a bcrypt hash"},
		{`[ { name: a, headers: { X-Consumer-Name: x } } ]`, "is set by the gateway"},
		{`[ { name: a, bogus: 1 } ]`, `unknown key "bogus"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			path := filepath.Join(dir, "weir.yaml")
			src := "server: { listen: \"127.0.0.1:0\", admin: \"\" }\nupstreams: { be: { kind: echo } }\n" +
				"routes: [ { name: r, upstream: be, filters: [ { test-login: { consumer: a } } ] } ]\nconsumers: " + tt.consumers + "\n"
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "abc$def") {
				t.Errorf("the error quotes a secret: %v", err)
			}
		})
	}
}
