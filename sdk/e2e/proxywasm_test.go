package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/engine"
)

// ProxyWasmLanguages are the languages of the proxy-wasm filters in sdk/proxywasm/<lang>/examples
// (C and Rust against the raw ABI, AssemblyScript with @solo-io/proxy-runtime), which
// sdk/build.sh builds as language "proxywasm".
var ProxyWasmLanguages = []string{"c", "rust", "assemblyscript"}

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

// BenchmarkAddHeaderPerABI measures what a header-setting filter adds to a request per plugin
// ABI, as BenchmarkAddHeader does per SDK: the C add-header for http-wasm (sdk/c) beside the
// proxy-wasm add-header filters (sdk/proxywasm), each setting a request and a response header,
// on routes ending in a local 200, against the route with that `respond` filter alone ("none").
// The added cost is a route's ns/op minus none's.
func BenchmarkAddHeaderPerABI(b *testing.B) {
	type guest struct{ name, wasm, header, plugin string }
	var guests []guest
	if bl := buildAll(b)["c"]; bl.failed == "" && bl.skip == "" {
		guests = append(guests, guest{"http-wasm-c", filepath.Join(bl.dir, "c-add-header.wasm"), "c", "c-add-header"})
	}
	for _, lang := range ProxyWasmLanguages {
		proxyWasm(b, "c", "add-header") // builds them all once; skips b when C cannot be built
		if bl := proxyWasmBuilds[lang]; bl.failed == "" && bl.skip == "" {
			guests = append(guests, guest{"proxy-wasm-" + lang, filepath.Join(bl.dir, "proxywasm-"+lang+"-add-header.wasm"),
				"proxywasm-" + lang, "proxywasm-" + lang + "-add-header"})
		}
	}
	var routes, plugins strings.Builder
	for _, g := range guests {
		fmt.Fprintf(&plugins, "  %s: { file: %q, timeout: 1s }\n", g.name, g.wasm)
		fmt.Fprintf(&routes, `  - name: %[1]s
    match: { path_prefix: /%[1]s/ }
    upstream: none
    filters:
      - %[1]s: {}
      - respond: { status: 200, body: ok }
`, g.name)
	}
	path := filepath.Join(b.TempDir(), "weir.yaml")
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: %q }
access_log: { enabled: false }
upstreams:
  none: { kind: echo }
plugins:
%s
routes:
  - name: none
    match: { path_prefix: /none/ }
    upstream: none
    filters:
      - respond: { status: 200, body: ok }
%s`, cacheDir, plugins.String(), routes.String())
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	e, err := engine.New(path, zerolog.Nop())
	if err != nil {
		b.Fatalf("engine: %v\nconfig:\n%s", err, cfg)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	for _, g := range append([]guest{{name: "none"}}, guests...) {
		b.Run(g.name, func(b *testing.B) {
			var req fasthttp.Request
			req.SetRequestURI("http://bench.local/" + g.name + "/x")
			var rc fasthttp.RequestCtx
			rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			serve := func() {
				rc.Response.Reset()
				e.Handle(&rc)
			}
			serve()
			if rc.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
			}
			if g.name != "none" {
				if got := string(rc.Response.Header.Peek("X-Wasm-Plugin")); got != g.plugin {
					b.Fatalf("X-Wasm-Plugin %q, want %q", got, g.plugin)
				}
				if got := string(rc.Request.Header.Peek("X-Wasm")); got != g.header {
					b.Fatalf("request X-Wasm %q, want %q", got, g.header)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				serve()
			}
		})
	}
}

// TestProxyWasmCallout runs the C callout filter through the gateway: each request waits for
// its HTTP callout to the config's "auth" upstream, whose answer lets it through (with the
// user the answer names), replaces it, or (auth down) fails it.
func TestProxyWasmCallout(t *testing.T) {
	w := proxyWasm(t, "c", "callout")
	auth := startHandler(t, func(rc *fasthttp.RequestCtx) {
		if string(rc.Request.Header.Peek("Authorization")) != "Bearer letmein" {
			rc.SetStatusCode(401)
			rc.SetBodyString("denied by auth")
			return
		}
		rc.Response.Header.Set("X-User", "alice")
	})
	var hits atomic.Int64
	be := startHandler(t, func(rc *fasthttp.RequestCtx) {
		hits.Add(1)
		rc.Response.Header.SetBytesV("X-Seen-User", rc.Request.Header.Peek("X-Auth-User"))
		rc.SetBodyString("backend")
	})
	addr := startGateway(t, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s, plugin_cache_dir: %q }
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 5s }
  auth: { targets: [%q], timeout: 5s }
plugins:
  guest: { file: %q, timeout: 2s }
routes:
  - name: plugin
    match: { path_prefix: /p/ }
    upstream: be
    filters:
      - guest: {}
`, cacheDir, be.addr, auth.addr, w))
	get := func(token string) (int, string, string) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + addr + "/p/x")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatalf("GET: %v", err)
		}
		return resp.StatusCode(), string(resp.Body()), string(resp.Header.Peek("X-Seen-User"))
	}
	for i := 0; i < 2; i++ {
		if st, body, user := get("letmein"); st != 200 || body != "backend" || user != "alice" {
			t.Errorf("authorized: %d %q user %q, want 200 backend alice", st, body, user)
		}
		before := hits.Load()
		if st, body, _ := get("nope"); st != 403 || body != "denied by auth" || hits.Load() != before {
			t.Errorf("unauthorized: %d %q (backend hit %v), want 403 %q, no backend hit", st, body, hits.Load() != before, "denied by auth")
		}
	}
	auth.stop()
	if st, body, _ := get("letmein"); st != 503 || body != "auth unavailable" {
		t.Errorf("auth down: %d %q, want 503 %q", st, body, "auth unavailable")
	}
}

type handlerServer struct {
	addr string
	stop func()
}

// startHandler serves h on a loopback port until cleanup (or stop).
func startHandler(t *testing.T, h fasthttp.RequestHandler) handlerServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	stop := func() { _ = srv.Shutdown() }
	t.Cleanup(stop)
	return handlerServer{addr: ln.Addr().String(), stop: stop}
}
