// Package e2e builds every SDK example from source and runs it through the gateway: an engine
// in-process, a config putting each plugin on its own route in front of a loopback backend,
// and real HTTP requests. A language whose toolchain is missing is skipped with the reason
// sdk/build.sh gives (CI sets WEIR_REQUIRE_ALL=1, which makes it a failure instead).
package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/testkit"
	_ "github.com/weir-gateway/weir/filters/all"
	_ "github.com/weir-gateway/weir/plugins/proxywasm" // the proxy-wasm plugin ABI
	_ "github.com/weir-gateway/weir/plugins/wasmhost"  // the http-wasm plugin ABI
)

// Languages are the SDKs, in sdk/<lang>.
var Languages = []string{"c", "rust", "assemblyscript", "go"}

// Examples every SDK ships.
var Examples = []string{"add-header", "auth-deny"}

// built is the outcome of building one language's examples.
type built struct {
	dir    string // holds <lang>-<example>.wasm
	skip   string // why the language was skipped, if it was
	failed string // the build's output, if it failed
}

var (
	buildOnce sync.Once
	builds    map[string]built
)

var skipLine = regexp.MustCompile(`plugins: [a-z]+: skipped: (.*)`)

// buildAll runs sdk/build.sh once per language (with one weir binary, whose plugin build
// compiles each example), which rebuilds an example into sdk/out only
// when its sources are newer (as `make plugins` does), so tests never run a stale module.
func buildAll(t testing.TB) map[string]built {
	buildOnce.Do(func() {
		builds = map[string]built{}
		script, err := filepath.Abs("../build.sh")
		if err != nil {
			panic(err)
		}
		dir := filepath.Join(filepath.Dir(script), "out")
		// One weir binary for every language's build.sh, which builds each example with
		// `weir plugin build`.
		weirBin := filepath.Join(cacheDir, "weir")
		build := exec.Command(goBinary(), "build", "-o", weirBin, "../../cmd/weir")
		if out, err := build.CombinedOutput(); err != nil {
			for _, lang := range append(Languages[:len(Languages):len(Languages)], "wat") {
				builds[lang] = built{failed: "go build ./cmd/weir: " + string(out)}
			}
			return
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, lang := range append(Languages[:len(Languages):len(Languages)], "wat") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd := exec.Command(script, lang)
				cmd.Env = append(os.Environ(), "GO="+goBinary(), "WEIR="+weirBin, "WEIR_NO_INSTALL=1")
				out, err := cmd.CombinedOutput()
				b := built{dir: dir}
				switch m := skipLine.FindSubmatch(out); {
				case err != nil:
					b.failed = string(out)
				case m != nil:
					b.skip = string(m[1])
				}
				mu.Lock()
				builds[lang] = b
				mu.Unlock()
			}()
		}
		wg.Wait()
	})
	return builds
}

// goBinary is the go command running this test, so plugins build with the same toolchain.
func goBinary() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// cacheDir is the wazero compilation cache shared by every gateway of the run, so each module
// compiles once.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weir-e2e-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wasm returns the path of lang's example, skipping or failing t when it was not built.
func wasm(t testing.TB, lang, example string) string {
	t.Helper()
	b := buildAll(t)[lang]
	if b.failed != "" {
		t.Fatalf("building the %s examples failed:\n%s", lang, b.failed)
	}
	if b.skip != "" {
		t.Skipf("%s SDK not tested: %s", lang, b.skip)
	}
	return filepath.Join(b.dir, lang+"-"+example+".wasm")
}

// backend is a loopback upstream that reports what reached it: the X-Wasm header it got
// comes back as X-Seen-Wasm, and hits counts requests.
type backend struct {
	addr string
	hits atomic.Int64
}

func startBackend(t testing.TB) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be := &backend{addr: ln.Addr().String()}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		be.hits.Add(1)
		rc.Response.Header.SetBytesV("X-Seen-Wasm", rc.Request.Header.Peek("X-Wasm"))
		rc.SetContentType("text/plain")
		rc.SetBody(rc.Path())
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return be
}

// startGateway serves cfg (YAML) from an in-process engine and returns its address.
func startGateway(t testing.TB, cfg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(path, zerolog.Nop())
	if err != nil {
		t.Fatalf("engine: %v\nconfig:\n%s", err, cfg)
	}
	return testkit.Serve(t, e)
}

// pluginConfig is a gateway with one plugin, on route /p/, in front of the backend, and one
// plain route /plain/ beside it.
func pluginConfig(t testing.TB, be, wasmPath string) string {
	return fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, plugin_cache_dir: %q }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s, idle_timeout: 300ms }
plugins:
  guest: { file: %q, timeout: 2s, memory_mb: 64 }
routes:
  - name: plugin
    match: { path_prefix: /p/ }
    upstream: be
    filters:
      - guest: {}
  - name: plain
    match: { path_prefix: /plain/ }
    upstream: be
`, cacheDir, be, wasmPath)
}

type result struct {
	status int
	body   string
	header map[string]string
}

func do(t *testing.T, addr, path string, hdr map[string]string) result {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	r := result{status: resp.StatusCode(), body: string(bytes.Clone(resp.Body())), header: map[string]string{}}
	for _, k := range []string{"X-Seen-Wasm", "X-Wasm-Plugin", "Content-Type", "WWW-Authenticate"} {
		r.header[k] = string(resp.Header.Peek(k))
	}
	return r
}

func TestAddHeader(t *testing.T) {
	for _, lang := range Languages {
		t.Run(lang, func(t *testing.T) {
			w := wasm(t, lang, "add-header")
			be := startBackend(t)
			addr := startGateway(t, pluginConfig(t, be.addr, w))
			for i := 0; i < 3; i++ { // the same instance serves again: nothing leaks between requests
				got := do(t, addr, "/p/x", nil)
				if got.status != 200 || got.body != "/p/x" {
					t.Fatalf("status %d body %q, want 200 %q", got.status, got.body, "/p/x")
				}
				if want := lang; got.header["X-Seen-Wasm"] != want {
					t.Errorf("upstream saw X-Wasm %q, want %q", got.header["X-Seen-Wasm"], want)
				}
				if want := lang + "-add-header"; got.header["X-Wasm-Plugin"] != want {
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

func TestAuthDeny(t *testing.T) {
	for _, lang := range Languages {
		t.Run(lang, func(t *testing.T) {
			w := wasm(t, lang, "auth-deny")
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
				{"bearer letmein", 401, `{"error":"unauthorized"}`, false},
				{"Bearer letmein", 200, "/p/ok", true},
				{"", 401, `{"error":"unauthorized"}`, false}, // a denial after a pass: no stale state
			}
			for _, tt := range tests {
				hdr := map[string]string{}
				if tt.auth != "" {
					hdr["Authorization"] = tt.auth
				}
				before := be.hits.Load()
				path := "/p/ok"
				got := do(t, addr, path, hdr)
				hit := be.hits.Load() > before
				if got.status != tt.wantStatus || got.body != tt.wantBody || hit != tt.wantHit {
					t.Errorf("Authorization %q: got %d %q (upstream hit %v), want %d %q (hit %v)",
						tt.auth, got.status, got.body, hit, tt.wantStatus, tt.wantBody, tt.wantHit)
				}
				if tt.wantStatus == 401 {
					if ct := got.header["Content-Type"]; !strings.HasPrefix(ct, "application/json") {
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
