package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestUpstreamResilienceKeys(t *testing.T) {
	c := mustParse(t, `
upstreams:
  api:
    targets: ["10.0.0.1:80", {addr: "10.0.0.2:80", weight: 3}, "srv:_http._tcp.api.internal"]
    balance: consistent_hash
    hash_on: header:X-User
    bounded_load: 1.5
    request_timeout: 2s
    dns_refresh: 10s
    health: { path: /healthz, expect: [200, 204], interval: 2s, unhealthy_threshold: 3 }
    outlier: { consecutive_5xx: 2, max_ejected_percent: 30 }
    retries: { attempts: 2, backoff: 50ms }
    tls: { ca_file: ca.pem, server_name: api.internal }
routes:
  - { name: r, upstream: api, timeout: 300ms, retries: { attempts: 0 } }
`)
	u := c.Upstreams["api"]
	if got, want := u.Targets, []string{"10.0.0.1:80", "10.0.0.2:80", "srv:_http._tcp.api.internal"}; !reflect.DeepEqual(got, want) {
		t.Errorf("targets = %v, want %v", got, want)
	}
	if got, want := u.Weights, []int{1, 3, 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("weights = %v, want %v", got, want)
	}
	if u.HashOn != "header:X-User" || u.BoundedLoad != 1.5 || u.RequestTimeout != 2*time.Second || u.DNSRefresh != 10*time.Second {
		t.Errorf("balance settings = %+v", u)
	}
	wantHealth := Health{Path: "/healthz", Expect: []int{200, 204}, Interval: 2 * time.Second, Timeout: time.Second,
		Jitter: 500 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 3}
	if !reflect.DeepEqual(u.Health, wantHealth) {
		t.Errorf("health = %+v, want %+v", u.Health, wantHealth)
	}
	if got, want := u.Outlier, (Outlier{Consecutive5xx: 2, ConsecutiveConnectFailures: 3, BaseEjection: 30 * time.Second,
		MaxEjection: 5 * time.Minute, MaxEjectedPercent: 30}); got != want {
		t.Errorf("outlier = %+v, want %+v", got, want)
	}
	wantRetries := DefaultRetries()
	wantRetries.Attempts, wantRetries.Backoff = 2, 50*time.Millisecond
	if u.Retries != wantRetries {
		t.Errorf("retries = %+v, want %+v", u.Retries, wantRetries)
	}
	if u.TLS == nil || *u.TLS != (UpstreamTLS{CAFile: "ca.pem", ServerName: "api.internal"}) {
		t.Errorf("tls = %+v", u.TLS)
	}
	r := c.Routes[0]
	routeRetries := DefaultRetries()
	routeRetries.Attempts = 0
	if r.Timeout == nil || *r.Timeout != 300*time.Millisecond || r.Retries == nil || *r.Retries != routeRetries {
		t.Errorf("route overrides: timeout %v retries %+v", r.Timeout, r.Retries)
	}
	// Plain string targets leave Weights nil.
	if w := mustParse(t, minimal).Upstreams["u"].Weights; w != nil {
		t.Errorf("weights without weighted targets = %v, want nil", w)
	}
}

func TestUpstreamResilienceMistakes(t *testing.T) {
	tests := []struct {
		name, upstream, route string
		want                  []string
	}{
		{"weight range", `targets: [{addr: "a:1", weight: 0}, {addr: "b:1", weight: 70000}]`, "",
			[]string{"upstreams.u.targets[0].weight: is 0", "upstreams.u.targets[1].weight: is 70000"}},
		{"target object keys", `targets: [{address: "a:1"}]`, "",
			[]string{`upstreams.u.targets[0]: unknown key "address"`, "upstreams.u.targets[0].addr: is missing"}},
		{"bad srv", `targets: ["srv:"]`, "", []string{`"srv:" is not srv:_service._proto.name`}},
		{"unknown balance", `targets: ["a:1"], balance: fastest`, "", []string{`unknown balance "fastest"`}},
		{"hash_on without hash", `targets: ["a:1"], hash_on: client_ip`, "", []string{"applies to balance consistent_hash only"}},
		{"bad hash_on", `targets: ["a:1"], balance: consistent_hash, hash_on: "header:"`, "", []string{`"header:": want client_ip`}},
		{"bounded load", `targets: ["a:1"], balance: consistent_hash, bounded_load: 0.5`, "", []string{"bounded_load: is 0.5"}},
		{"health", `targets: ["a:1"], health: {path: healthz, expect: [42], interval: 0s, healthy_threshold: 0}`, "",
			[]string{`health.path: "healthz" does not start`, "health.expect[0]: 42 is not an HTTP status",
				"health.interval: must be positive", "health.healthy_threshold: must be at least 1"}},
		{"health unknown key", `targets: ["a:1"], health: {path: /h, every: 1s}`, "", []string{`upstreams.u.health: unknown key "every"`}},
		{"outlier", `targets: ["a:1"], outlier: {max_ejected_percent: 120, consecutive_5xx: -1}`, "",
			[]string{"max_ejected_percent: is 120", "consecutive_5xx: is negative"}},
		{"retries", `targets: ["a:1"], retries: {attempts: 11, budget: 2, backoff: 1s, max_backoff: 10ms}`, "",
			[]string{"retries.attempts: is 11", "retries.budget: is 2", "retries.max_backoff: 10ms is below backoff 1s"}},
		{"tls pair", `targets: ["a:1"], tls: {cert_file: c.pem}`, "", []string{"cert_file and key_file go together"}},
		{"route overrides", `targets: ["a:1"]`, `timeout: -1s, retries: {attempts: -1, tries: 2}`,
			[]string{`routes[0].timeout (route "r"): is negative`, `routes[0].retries (route "r"): unknown key "tries"`,
				`routes[0].retries.attempts (route "r"): is -1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "upstreams: { u: { " + tt.upstream + " } }\nroutes: [ { name: r, upstream: u"
			if tt.route != "" {
				src += ", " + tt.route
			}
			src += " } ]\n"
			_, err := Parse("test.yaml", []byte(src))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", src)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestServerTLSKeys(t *testing.T) {
	c := mustParse(t, minimal+`
server:
  tls:
    certificates:
      - { cert_file: a.pem, key_file: a.key }
`)
	if c.Server.TLS == nil || len(c.Server.TLS.Certificates) != 1 || c.Server.TLS.Certificates[0] != (Certificate{"a.pem", "a.key"}) {
		t.Errorf("server.tls = %+v", c.Server.TLS)
	}
	for _, src := range []string{
		"server: { tls: { certificates: [] } }",
		"server: { tls: { certificates: [ { cert_file: a.pem } ] } }",
	} {
		if _, err := Parse("test.yaml", []byte(minimal+src)); err == nil || !strings.Contains(err.Error(), "server.tls") {
			t.Errorf("%s: err = %v, want a server.tls problem", src, err)
		}
	}
}

// TestREADMEUpstreamExample parses the upstreams example of README.md, so the documented keys
// stay valid.
func TestREADMEUpstreamExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "```yaml\nupstreams:\n  api:")
	if start < 0 {
		t.Fatal("README.md has no upstreams example")
	}
	body := doc[start+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	if _, err := Parse("README.md", []byte(body)); err != nil {
		t.Errorf("README upstreams example: %v", err)
	}
}
