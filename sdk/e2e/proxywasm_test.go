package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// ProxyWasmLanguages are the languages of the proxy-wasm filters written against the raw ABI,
// in sdk/proxywasm/<lang>/examples, which sdk/build.sh builds as language "proxywasm".
var ProxyWasmLanguages = []string{"c", "rust"}

var (
	proxyWasmOnce   sync.Once
	proxyWasmBuilds map[string]built
)

var proxyWasmSkip = regexp.MustCompile(`plugins: proxywasm-([a-z]+): skipped: (.*)`)

// proxyWasm returns the path of a proxy-wasm example, built by `sdk/build.sh proxywasm` (with
// the weir binary buildAll built), skipping or failing t as wasm does.
func proxyWasm(t testing.TB, lang, example string) string {
	t.Helper()
	// buildAll also builds the weir binary the script runs.
	if wb := buildAll(t)["c"]; strings.HasPrefix(wb.failed, "go build ./cmd/weir") {
		t.Fatalf("building weir failed:\n%s", wb.failed)
	}
	proxyWasmOnce.Do(func() {
		proxyWasmBuilds = map[string]built{}
		script, _ := filepath.Abs("../build.sh")
		dir := filepath.Join(filepath.Dir(script), "out")
		cmd := exec.Command(script, "proxywasm")
		cmd.Env = append(os.Environ(), "GO="+goBinary(), "WEIR="+filepath.Join(cacheDir, "weir"), "WEIR_NO_INSTALL=1")
		out, err := cmd.CombinedOutput()
		for _, l := range ProxyWasmLanguages {
			b := built{dir: dir}
			if err != nil {
				b.failed = string(out)
			}
			proxyWasmBuilds[l] = b
		}
		for _, m := range proxyWasmSkip.FindAllSubmatch(out, -1) {
			b := proxyWasmBuilds[string(m[1])]
			b.skip = string(m[2])
			proxyWasmBuilds[string(m[1])] = b
		}
	})
	b := proxyWasmBuilds[lang]
	switch {
	case b.skip != "":
		t.Skipf("proxy-wasm %s examples not tested: %s", lang, b.skip)
	case b.failed != "":
		t.Fatalf("building the proxy-wasm examples failed:\n%s", b.failed)
	}
	return filepath.Join(b.dir, "proxywasm-"+lang+"-"+example+".wasm")
}

// TestProxyWasmAddHeader runs the raw-ABI add-header filters through the gateway: the upstream
// sees the request header they set, the client the response header.
func TestProxyWasmAddHeader(t *testing.T) {
	for _, lang := range ProxyWasmLanguages {
		t.Run(lang, func(t *testing.T) {
			w := proxyWasm(t, lang, "add-header")
			be := startBackend(t)
			addr := startGateway(t, pluginConfig(t, be.addr, w))
			for i := 0; i < 3; i++ { // the same instance serves again: nothing leaks between requests
				got := do(t, addr, "/p/x", nil)
				if got.status != 200 || got.body != "/p/x" {
					t.Fatalf("status %d body %q, want 200 %q", got.status, got.body, "/p/x")
				}
				if want := "proxywasm-" + lang; got.header["X-Seen-Wasm"] != want {
					t.Errorf("upstream saw X-Wasm %q, want %q", got.header["X-Seen-Wasm"], want)
				}
				if want := "proxywasm-" + lang + "-add-header"; got.header["X-Wasm-Plugin"] != want {
					t.Errorf("response X-Wasm-Plugin %q, want %q", got.header["X-Wasm-Plugin"], want)
				}
			}
			plain := do(t, addr, "/plain/x", nil)
			if plain.header["X-Seen-Wasm"] != "" || plain.header["X-Wasm-Plugin"] != "" {
				t.Errorf("plain route touched by the plugin: %v", plain.header)
			}
		})
	}
}

// TestProxyWasmAuthDeny runs the raw-ABI auth-deny filters through the gateway: a local reply
// (proxy_send_local_response with headers) unless the request carries the token.
func TestProxyWasmAuthDeny(t *testing.T) {
	for _, lang := range ProxyWasmLanguages {
		t.Run(lang, func(t *testing.T) {
			w := proxyWasm(t, lang, "auth-deny")
			be := startBackend(t)
			addr := startGateway(t, pluginConfig(t, be.addr, w))
			tests := []struct {
				auth       string
				wantStatus int
				wantBody   string
				wantHit    bool
			}{
				{"", 401, `{"error":"unauthorized"}`, false},
				{"Bearer nope", 401, `{"error":"unauthorized"}`, false},
				{"Bearer letmein", 200, "/p/ok", true},
				{"", 401, `{"error":"unauthorized"}`, false}, // a denial after a pass: no stale state
			}
			for _, tt := range tests {
				hdr := map[string]string{}
				if tt.auth != "" {
					hdr["Authorization"] = tt.auth
				}
				before := be.hits.Load()
				got := do(t, addr, "/p/ok", hdr)
				hit := be.hits.Load() > before
				if got.status != tt.wantStatus || got.body != tt.wantBody || hit != tt.wantHit {
					t.Errorf("Authorization %q: got %d %q (upstream hit %v), want %d %q (hit %v)",
						tt.auth, got.status, got.body, hit, tt.wantStatus, tt.wantBody, tt.wantHit)
				}
				if tt.wantStatus == 401 {
					if ct := got.header["Content-Type"]; ct != "application/json" {
						t.Errorf("Authorization %q: Content-Type %q, want application/json", tt.auth, ct)
					}
					if wa := got.header["WWW-Authenticate"]; wa != "Bearer" {
						t.Errorf("Authorization %q: WWW-Authenticate %q, want Bearer", tt.auth, wa)
					}
				}
			}
		})
	}
}
