package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/core/testkit"
	// The engine knows plugin ABIs only through the loaders registered in core/filter; these
	// end-to-end tests link the http-wasm one in, as cmd/weir does (a test-only arrow).
	_ "github.com/weir-gateway/weir/plugins/wasmhost"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

const pluginConfig = `
server: { listen: "127.0.0.1:0", admin: "", plugin_cache_dir: "off" }
access_log: { enabled: false }
upstreams:
  echo: { kind: echo }
plugins:
  hello:
    file: hello.wasm
    timeout: 50ms
    memory_mb: 1
    config: { Greeting: hi, Nested: { A: 1, B: 2 } }
  spin:
    file: spin.wasm
    timeout: 20ms
    memory_mb: 1
    fail: %s
routes:
  - name: hello
    match: { path: /hello }
    upstream: echo
    filters:
      - hello: { Nested: { B: %d } }
  - name: spin
    match: { path: /spin }
    upstream: echo
    filters:
      - spin: {}
  - name: plain
    match: { path: /plain }
    upstream: echo
`

// spinWasm loops forever in handle_request.
func spinWasm() []byte {
	return wasmtest.Guest{HandleRequest: wasmtest.NewCode().Loop().Br(0).End().I64(1)}.Module().Encode()
}

func writePluginConfig(t testing.TB, dir, fail string, b int) string {
	t.Helper()
	for name, wasm := range map[string][]byte{"hello.wasm": wasmtest.Hello(), "spin.wasm": spinWasm()} {
		if err := os.WriteFile(filepath.Join(dir, name), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(pluginConfig, fail, b)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func fetch(t testing.TB, c *fasthttp.Client, url string) (int, string, *fasthttp.ResponseHeader) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	var h fasthttp.ResponseHeader
	resp.Header.CopyTo(&h)
	return resp.StatusCode(), string(resp.Body()), &h
}

func TestPluginOnRoute(t *testing.T) {
	path := writePluginConfig(t, t.TempDir(), "closed", 3)
	_, addr := start(t, path)
	c := &fasthttp.Client{}
	status, body, h := fetch(t, c, "http://"+addr+"/hello")
	if status != 200 || !strings.Contains(body, `["X-Wasm","hello from a WebAssembly plugin"]`) {
		t.Errorf("status %d, body %s: the upstream should see the plugin's request header", status, body)
	}
	// The route's config merges over the plugin's, key case preserved.
	if got, want := string(h.Peek("X-Plugin-Config")), `{"Greeting":"hi","Nested":{"A":1,"B":3}}`; got != want {
		t.Errorf("X-Plugin-Config = %s, want %s", got, want)
	}
}

// TestPluginFaultKeepsOtherRoutesServing: a plugin that loops is stopped at its deadline and
// answered per its fail policy, while another route keeps answering normally.
func TestPluginFaultKeepsOtherRoutesServing(t *testing.T) {
	for _, tc := range []struct {
		fail string
		want int
	}{{"closed", 500}, {"open", 200}} {
		t.Run(tc.fail, func(t *testing.T) {
			_, addr := start(t, writePluginConfig(t, t.TempDir(), tc.fail, 3))
			c := &fasthttp.Client{}
			h := testkit.NewHammer(t)
			var spinWorst time.Duration
			h.Go(func(int) bool {
				t0 := time.Now()
				status, _, _ := fetch(t, c, "http://"+addr+"/spin")
				spinWorst = max(spinWorst, time.Since(t0))
				if status != tc.want {
					t.Errorf("/spin: status %d, want %d", status, tc.want)
					return false
				}
				return true
			})
			var worst time.Duration
			start := time.Now()
			n := 0
			for ; time.Since(start) < 200*time.Millisecond; n++ {
				t0 := time.Now()
				if status, _, _ := fetch(t, c, "http://"+addr+"/plain"); status != 200 {
					t.Fatalf("/plain: status %d", status)
				}
				worst = max(worst, time.Since(t0))
			}
			h.Stop()
			t.Logf("/plain: %d requests in 200ms, worst %s; /spin answered %d within %s (timeout 20ms)", n, worst, tc.want, spinWorst)
		})
	}
}

// TestPluginReloadsDoNotLeakInstances reloads a config whose plugin config changes every time
// (so every reload builds a new module) and checks that retired modules close their instances.
func TestPluginReloadsDoNotLeakInstances(t *testing.T) {
	liveInstances := func() int64 { return telemetry.Metrics.Sum("plugins", "instances") }
	dir := t.TempDir()
	before := liveInstances()
	e, addr := start(t, writePluginConfig(t, dir, "closed", 0))
	c := &fasthttp.Client{}
	live := liveInstances() - before
	for i := 1; i <= 100; i++ {
		writePluginConfig(t, dir, "closed", i)
		if _, err := e.Reload("test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if i%10 == 0 {
			if _, _, h := fetch(t, c, "http://"+addr+"/hello"); !strings.Contains(string(h.Peek("X-Plugin-Config")), fmt.Sprintf(`"B":%d`, i)) {
				t.Fatalf("reload %d not in effect: %s", i, h.Peek("X-Plugin-Config"))
			}
		}
	}
	got := liveInstances() - before
	t.Logf("live instances: %d after start, %d after 100 reloads", live, got)
	if got > live+1 { // +1: the last /hello request may have grown the pool by one
		t.Errorf("live instances grew from %d to %d over 100 reloads", live, got)
	}
	// A reload that leaves the plugins alone keeps their modules and creates no instance.
	created := telemetry.Metrics.Group("plugins")["hello"]["instances_created"]
	cfg := strings.Replace(fmt.Sprintf(pluginConfig, "closed", 100), "/plain", "/plain2", 1)
	if err := os.WriteFile(filepath.Join(dir, "weir.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if after := telemetry.Metrics.Group("plugins")["hello"]["instances_created"]; after != created {
		t.Errorf("an unrelated change recreated the plugin: instances created %d -> %d", created, after)
	}
}

func TestPluginConfigErrors(t *testing.T) {
	hello := wasmtest.Hello()
	sum := sha256.Sum256(hello)
	good := hex.EncodeToString(sum[:])
	tests := []struct {
		name, plugin, want string
	}{
		{"missing file", "file: nope.wasm", `plugins.p.file (filter "p"): ` + "%DIR%/nope.wasm"},
		{"sha256 mismatch", "file: p.wasm\n    sha256: \"" + strings.Repeat("0", 64) + "\"", "but the config pins 0000"},
		{"sha256 pin ok", "file: p.wasm\n    sha256: " + good, ""},
		{"bad sha256", "file: p.wasm\n    sha256: xyz", `"xyz" is not a hex sha256`},
		{"not wasm", "file: junk.wasm", `routes[0].filters[0] (route "r", filter "p"): load plugin "p": compile`},
		{"bad fail policy", "file: p.wasm\n    fail: maybe", `unknown fail policy "maybe"`},
		{"unknown key", "file: p.wasm\n    memory: 5", `unknown key "memory"`},
		{"zero timeout", "file: p.wasm\n    timeout: 0s", "plugins.p.timeout"},
		{"pool min over max", "file: p.wasm\n    pool: { max: 2, min: 3 }", "plugins.p.pool.min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "p.wasm"), hello, 0o644)
			os.WriteFile(filepath.Join(dir, "junk.wasm"), []byte("not wasm"), 0o644)
			cfg := "server: { plugin_cache_dir: \"off\" }\nupstreams: { e: { kind: echo } }\nplugins:\n  p:\n    " + tt.plugin +
				"\nroutes:\n  - name: r\n    upstream: e\n    filters:\n      - p: {}\n"
			path := filepath.Join(dir, "weir.yaml")
			os.WriteFile(path, []byte(cfg), 0o644)
			// As `weir validate` does: schema checks, then the build, which loads the module.
			loaded, err := LoadConfig(path)
			if err == nil {
				err = Check(loaded)
			}
			want := strings.ReplaceAll(tt.want, "%DIR%", dir)
			switch {
			case want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case want != "" && err == nil:
				t.Fatalf("loaded; want an error containing %q", want)
			case want != "" && !strings.Contains(err.Error(), want):
				t.Errorf("error:\n%v\nwant it to contain %q", err, want)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file %s: %v", path, err)
			}
		})
	}
}

// TestPluginsREADMEExample loads the configuration example of plugins/README.md, with the demo
// plugin standing in for its module, so the documented keys stay the accepted ones.
func TestPluginsREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../../plugins/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in plugins/README.md")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "plugins"), 0o755)
	os.WriteFile(filepath.Join(dir, "plugins", "add_header.wasm"), wasmtest.Hello(), 0o644)
	cfg := "server: { plugin_cache_dir: \"off\" }\nupstreams: { api: { kind: echo } }\n" + example
	path := filepath.Join(dir, "weir.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("the README example does not load: %v", err)
	}
	if err := Check(c); err != nil {
		t.Fatalf("the README example does not build: %v", err)
	}
}
