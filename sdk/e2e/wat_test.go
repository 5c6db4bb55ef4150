package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watTimeout is the per-call deadline of the misbehaving guests.
const watTimeout = 100 * time.Millisecond

// TestWATGuests runs the hand-written guests of sdk/wat through the gateway: a well-behaved one,
// and one per fault (trap in either phase, endless loop, memory bomb, bad pointer, oversized
// header). Each fault is answered per the plugin's fail policy, and after each the gateway
// still serves the plain route and the healthy plugin.
func TestWATGuests(t *testing.T) {
	bl := buildAll(t)["wat"]
	if bl.failed != "" {
		t.Fatalf("building the WAT guests failed:\n%s", bl.failed)
	}
	if bl.skip != "" {
		t.Skipf("WAT guests not tested: %s", bl.skip)
	}
	guests := []string{"add-header", "trap-request", "trap-response", "loop", "memory-bomb", "bad-pointer", "huge-header"}
	var plugins, routes strings.Builder
	for _, g := range guests {
		for _, fail := range []string{"closed", "open"} {
			name := fail + "-" + g
			fmt.Fprintf(&plugins, "  %s: { file: %q, timeout: %s, memory_mb: 2, fail: %s }\n",
				name, filepath.Join(bl.dir, "wat-"+g+".wasm"), watTimeout, fail)
			fmt.Fprintf(&routes, "  - name: %[1]s\n    match: { path_prefix: /%[1]s/ }\n    upstream: be\n    filters:\n      - %[1]s: {}\n", name)
		}
	}
	be := startBackend(t)
	addr := startGateway(t, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, plugin_cache_dir: %q }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s, idle_timeout: 300ms }
plugins:
%s
routes:
%s
  - name: plain
    match: { path_prefix: /plain/ }
    upstream: be
`, cacheDir, be.addr, plugins.String(), routes.String()))

	healthy := func(t *testing.T) {
		t.Helper()
		if got := do(t, addr, "/plain/x", nil); got.status != 200 || got.body != "/plain/x" {
			t.Errorf("plain route after the fault: %d %q", got.status, got.body)
		}
		got := do(t, addr, "/closed-add-header/x", nil)
		if got.status != 200 || got.header["X-Seen-Wasm"] != "wat" || got.header["X-Wasm-Plugin"] != "wat-add-header" {
			t.Errorf("healthy plugin after the fault: %d %v", got.status, got.header)
		}
	}
	tests := []struct {
		route      string
		wantStatus int
		wantHit    bool // whether the upstream is reached
	}{
		{"closed-add-header", 200, true},
		{"closed-trap-request", 500, false},
		{"closed-trap-response", 500, true},
		{"closed-loop", 500, false},
		{"closed-memory-bomb", 500, false},
		{"closed-bad-pointer", 500, false},
		{"closed-huge-header", 500, false},
		{"open-trap-request", 200, true},
		{"open-loop", 200, true},
		{"open-memory-bomb", 200, true},
		{"open-bad-pointer", 200, true},
		{"open-huge-header", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			for i := 0; i < 2; i++ { // the second request gets a fresh instance
				before := be.hits.Load()
				start := time.Now()
				got := do(t, addr, "/"+tt.route+"/x", nil)
				took := time.Since(start)
				hit := be.hits.Load() > before
				if got.status != tt.wantStatus || hit != tt.wantHit {
					t.Errorf("got %d (upstream hit %v) %q, want %d (hit %v)", got.status, hit, got.body, tt.wantStatus, tt.wantHit)
				}
				// Every fault ends by the deadline; generous slack for a loaded CI machine.
				if limit := watTimeout + time.Second; took > limit {
					t.Errorf("answered after %v, want within %v", took, limit)
				}
				if strings.HasSuffix(tt.route, "-loop") {
					t.Logf("loop answered %d after %v (deadline %v)", got.status, took, watTimeout)
				}
				if strings.HasSuffix(tt.route, "-loop") && took < watTimeout {
					t.Errorf("loop answered after %v, before its %v deadline", took, watTimeout)
				}
			}
			healthy(t)
		})
	}
}
