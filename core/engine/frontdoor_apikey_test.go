package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// frontdoorConfig has routes for apikey, basicauth and acl in front of a recording upstream.
// Consumers: alice (key alice-key, Basic alice/alice-pass, group admins, X-Tier: gold), bob
// (key bob-key, group staff), guest (no credentials).
const frontdoorConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], retries: { attempts: 0 } }
consumers:
  - name: alice
    groups: [admins]
    headers: { X-Tier: gold }
    credentials:
      apikeys: [ { sha256: %q } ]
      basic: [ { user: alice, bcrypt: %q } ]
  - name: bob
    groups: [staff]
    credentials: { apikeys: [ { sha256: %q } ] }
  - name: guest
routes:
  - name: key
    match: { path_prefix: /key }
    upstream: be
    filters: [ apikey ]
  - name: keyq
    match: { path_prefix: /q }
    upstream: be
    filters: [ { apikey: { query: api_key, hide_credentials: true } } ]
  - name: anon
    match: { path_prefix: /anon }
    upstream: be
    filters: [ { apikey: { anonymous: guest } }, { acl: { deny: [staff] } } ]
  - name: basic
    match: { path_prefix: /basic }
    upstream: be
    filters: [ basicauth ]
  - name: admin
    match: { path_prefix: /admin }
    upstream: be
    filters: [ apikey, { acl: { allow: [admins] } } ]
  - name: aclonly
    match: { path_prefix: /aclonly }
    upstream: be
    filters: [ { acl: { allow: [admins] } } ]
`

func startFrontdoor(t *testing.T) (*recorder, string) {
	t.Helper()
	rec := startRecorder(t)
	src := fmt.Sprintf(frontdoorConfig, rec.ln.Addr().String(), sha256Hex("alice-key"), aliceHash(t), sha256Hex("bob-key"))
	cfg, err := parseConfig("frontdoor.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return rec, serve(t, e)
}

type frontdoorCase struct {
	name       string
	req        string // request head lines after the request line, each ending in \r\n
	target     string
	wantStatus int
	wantUp     []string // fields the upstream must receive ("Name: value")
	notUp      []string // strings the upstream request must not contain
}

func runFrontdoor(t *testing.T, rec *recorder, addr string, tests []frontdoorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, br := dial(t, addr)
			ex := send(t, conn, br, "GET "+tt.target+" HTTP/1.1\r\nHost: h\r\n"+tt.req+"\r\n")
			if ex.status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", ex.status, ex.body, tt.wantStatus)
			}
			got := rec.take()
			if tt.wantStatus != 200 {
				if len(got) != 0 {
					t.Fatalf("a refused request reached the upstream:\n%s", got)
				}
				if !strings.Contains(ex.body, `"status":`) {
					t.Errorf("body %q is not the JSON error body", ex.body)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream got %d requests, want 1", len(got))
			}
			for _, f := range tt.wantUp {
				name, val, _ := strings.Cut(f, ": ")
				if v := fieldsNamed(got[0], name); len(v) != 1 || v[0] != val {
					t.Errorf("upstream %s = %q, want [%q]\n%s", name, v, val, got[0])
				}
			}
			for _, s := range tt.notUp {
				if strings.Contains(got[0], s) {
					t.Errorf("upstream request contains %q:\n%s", s, got[0])
				}
			}
		})
	}
}

func TestFrontdoorAPIKey(t *testing.T) {
	rec, addr := startFrontdoor(t)
	runFrontdoor(t, rec, addr, []frontdoorCase{
		{"accepted", "X-API-Key: alice-key\r\nX-Consumer-Name: mallory\r\n", "/key", 200,
			[]string{"X-Consumer-Name: alice", "X-Consumer-Groups: admins", "X-Tier: gold"}, []string{"mallory"}},
		{"other consumer", "x-api-key: bob-key\r\nX-Tier: platinum\r\n", "/key", 200,
			[]string{"X-Consumer-Name: bob", "X-Consumer-Groups: staff"}, []string{"X-Tier", "platinum"}},
		{"missing", "", "/key", 401, nil, nil},
		{"unknown", "X-API-Key: alice-key2\r\n", "/key", 401, nil, nil},
		{"empty", "X-API-Key: \r\n", "/key", 401, nil, nil},
		{"duplicate", "X-API-Key: bob-key\r\nX-API-Key: alice-key\r\n", "/key", 401, nil, nil},
		{"duplicate spelled with _", "X-API-Key: bob-key\r\nX_API_Key: alice-key\r\n", "/key", 401, nil, nil},
		{"query hidden", "", "/q?a=1&api_key=alice-key&b=%2F", 200, []string{"X-Consumer-Name: alice"}, []string{"alice-key", "api_key"}},
		{"query encoded name hidden", "", "/q?api%5Fkey=alice-key", 200, []string{"X-Consumer-Name: alice"}, []string{"alice-key", "api%5F"}},
		{"query twice", "", "/q?api_key=alice-key&api_key=bob-key", 401, nil, nil},
		{"query wrong", "", "/q?api_key=nope", 401, nil, nil},
		{"anonymous", "X-Consumer-Name: alice\r\n", "/anon", 200, []string{"X-Consumer-Name: guest"}, []string{"alice"}},
		{"anonymous route, wrong key", "X-API-Key: nope\r\n", "/anon", 401, nil, nil},
		{"anonymous route, denied group", "X-API-Key: bob-key\r\n", "/anon", 403, nil, nil},
	})
}

func TestFrontdoorBasicAuth(t *testing.T) {
	rec, addr := startFrontdoor(t)
	b := func(s string) string { return "Authorization: " + basicValue(s) + "\r\n" }
	runFrontdoor(t, rec, addr, []frontdoorCase{
		{"accepted, credentials hidden", b("alice:alice-pass") + "X-Consumer-Groups: root\r\n", "/basic", 200,
			[]string{"X-Consumer-Name: alice", "X-Consumer-Groups: admins"}, []string{"Authorization", "root"}},
		{"again, from the cache", b("alice:alice-pass"), "/basic", 200, []string{"X-Consumer-Name: alice"}, nil},
		{"wrong password", b("alice:alice-pas"), "/basic", 401, nil, nil},
		{"unknown user", b("bob:alice-pass"), "/basic", 401, nil, nil},
		{"malformed", "Authorization: Basic !!!\r\n", "/basic", 401, nil, nil},
		{"bearer", "Authorization: Bearer alice-pass\r\n", "/basic", 401, nil, nil},
		{"twice", b("alice:alice-pass") + b("alice:alice-pass"), "/basic", 401, nil, nil},
		{"missing", "", "/basic", 401, nil, nil},
	})
}

func TestFrontdoorACL(t *testing.T) {
	rec, addr := startFrontdoor(t)
	runFrontdoor(t, rec, addr, []frontdoorCase{
		{"allowed group", "X-API-Key: alice-key\r\n", "/admin/users", 200, []string{"X-Consumer-Name: alice"}, nil},
		{"other group", "X-API-Key: bob-key\r\n", "/admin/users", 403, nil, nil},
		{"forged consumer header", "X-Consumer-Name: alice\r\nX-Consumer-Groups: admins\r\n", "/admin/users", 401, nil, nil},
		{"no auth filter", "X-API-Key: alice-key\r\nX-Consumer-Name: alice\r\n", "/aclonly", 401, nil, nil},
		{"path spelling", "X-API-Key: bob-key\r\n", "//admin/./users", 403, nil, nil},
		{"encoded path", "X-API-Key: bob-key\r\n", "/%61dmin/users", 403, nil, nil},
	})
}

// TestFrontdoorReloadConsumers rotates a key file: after the reload the old key is refused and
// the new one accepted, with requests served throughout.
func TestFrontdoorReloadConsumers(t *testing.T) {
	rec := startRecorder(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	keyFile := filepath.Join(dir, "alice.key")
	write := func(name, body string) {
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(keyFile, "old-key\n")
	write(path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
consumers:
  - { name: alice, credentials: { apikeys: [ { file: alice.key } ] } }
routes:
  - { name: key, match: { path_prefix: / }, upstream: be, filters: [ apikey ] }
`, rec.ln.Addr().String()))
	e, addr := start(t, path)
	status := func(key string) int {
		conn, br := dial(t, addr)
		ex := send(t, conn, br, "GET / HTTP/1.1\r\nHost: h\r\nX-API-Key: "+key+"\r\n\r\n")
		rec.take()
		return ex.status
	}
	if got := status("old-key"); got != 200 {
		t.Fatalf("old key before the reload: %d, want 200", got)
	}
	write(keyFile, "new-key\n")
	if ev, err := e.Reload("test"); err != nil || ev.Unchanged {
		t.Fatalf("reload: %+v, %v (a changed key file must change the config)", ev, err)
	}
	if got := status("old-key"); got != 401 {
		t.Errorf("old key after the reload: %d, want 401", got)
	}
	if got := status("new-key"); got != 200 {
		t.Errorf("new key after the reload: %d, want 200", got)
	}
	// A broken key file keeps the running consumers.
	write(keyFile, "")
	if _, err := e.Reload("test"); err == nil || strings.Contains(err.Error(), "new-key") {
		t.Errorf("reload with an empty key file: %v, want an error that quotes no key", err)
	}
	if got := status("new-key"); got != 200 {
		t.Errorf("after a failed reload: %d, want 200", got)
	}
}

const frontdoorAllocConfig = `
access_log: { enabled: false }
upstreams: { be: { targets: ["127.0.0.1:1"] } }
consumers:
  - { name: alice, groups: [admins, ops], headers: { X-Tier: gold }, credentials: { apikeys: [ { sha256: "%s" } ] } }
routes:
  - { name: plain, match: { path_prefix: /plain }, upstream: be }
  - { name: key, match: { path_prefix: /key }, upstream: be, filters: [ apikey, { acl: { allow: [admins] } } ] }
`

// frontdoorEngine is an engine on frontdoorAllocConfig whose terminals answer 200 in place of
// the upstream, behind the consumer-header step as in a real snapshot.
func frontdoorEngine(tb testing.TB) *Engine {
	tb.Helper()
	cfg, err := parseConfig("alloc.yaml", []byte(fmt.Sprintf(frontdoorAllocConfig, sha256Hex("alice-key"))))
	if err != nil {
		tb.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	s := e.cur.Load()
	for i := range s.routes {
		s.routes[i].terminal = withConsumer(func(c *filter.Ctx) { c.SetStatusCode(200) })
	}
	return e
}

// TestFrontdoorAllocateNothing: the consumer-header strip, apikey, acl and the consumer headers
// set before forwarding cost no allocation per request, forged headers included.
func TestFrontdoorAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	e := frontdoorEngine(t)
	defer e.Shutdown(context.Background()) //nolint:errcheck
	var rc fasthttp.RequestCtx
	for _, path := range []string{"/plain", "/key"} {
		handle := func() {
			rc.Request.Reset()
			rc.Request.Header.SetMethod("GET")
			rc.Request.Header.SetHost("example.com")
			rc.Request.Header.Set("X-API-Key", "alice-key")
			rc.Request.Header.Set("X-Consumer-Name", "mallory")
			rc.Request.SetRequestURI(path)
			e.Handle(&rc)
		}
		handle()
		if rc.Response.StatusCode() != 200 {
			t.Fatalf("%s: status %d", path, rc.Response.StatusCode())
		}
		if path == "/key" && string(rc.Request.Header.Peek("X-Consumer-Name")) != "alice" {
			t.Fatalf("X-Consumer-Name = %q", rc.Request.Header.Peek("X-Consumer-Name"))
		}
		if n := testing.AllocsPerRun(200, handle); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", path, n)
		}
	}
}

// BenchmarkFrontdoor compares a route with apikey and acl with a plain route, through Handle.
func BenchmarkFrontdoor(b *testing.B) {
	e := frontdoorEngine(b)
	defer e.Shutdown(context.Background()) //nolint:errcheck
	for _, path := range []string{"/plain", "/key"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			var rc fasthttp.RequestCtx
			rc.Request.Header.SetMethod("GET")
			rc.Request.Header.SetHost("example.com")
			rc.Request.Header.Set("X-API-Key", "alice-key")
			rc.Request.SetRequestURI(path)
			b.ReportAllocs()
			for b.Loop() {
				e.Handle(&rc)
			}
		})
	}
}

// TestFilterFilesResolveAgainstConfigDir checks that a relative file path in a filter's config
// (basicauth's htpasswd) resolves against the config file's directory, not the gateway's
// working directory.
func TestFilterFilesResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users.htpasswd"), []byte("alice:"+aliceHash(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weir.yaml")
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "" }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes:
  - name: basic
    match: { path_prefix: / }
    upstream: be
    filters: [ { basicauth: { htpasswd: users.htpasswd } } ]
`, backend(t))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/x")
	req.Header.Set("Authorization", basicValue("alice:alice-pass"))
	if err := (&fasthttp.Client{}).DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("status %d, err %v; want 200 with the htpasswd next to the config", resp.StatusCode(), err)
	}
}
