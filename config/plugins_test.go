package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPluginsDecode(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.wasm"), []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	cfg := `upstreams: { e: { kind: echo } }
plugins:
  p:
    file: p.wasm
    timeout: 20ms
    pool: { max: 8 }
    max_body_bytes: 2MiB
    config: { ApiKey: s3cret, Nested: { CamelCase: [1, 2] } }
routes: [{ name: r, upstream: e, filters: [p: { Extra: true }] }]
`
	path := filepath.Join(dir, "weir.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Plugins["p"]
	want := DefaultPlugin()
	want.File, want.Path, want.Timeout, want.Pool.Max = "p.wasm", filepath.Join(dir, "p.wasm"), 20*time.Millisecond, 8
	want.MaxBodyBytes = 2 << 20
	want.Config = map[string]any{"ApiKey": "s3cret", "Nested": map[string]any{"CamelCase": []any{1, 2}}}
	want.Digest = p.Digest
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if len(p.Digest) != 64 {
		t.Errorf("digest %q", p.Digest)
	}
	if got := c.Redacted().Plugins["p"].Config["ApiKey"]; got != Redaction {
		t.Errorf("redacted ApiKey = %v", got)
	}
	if c.Plugins["p"].Config["ApiKey"] != "s3cret" {
		t.Error("Redacted changed the original")
	}
	merged := c.PluginConfig("p", map[string]any{"Nested": map[string]any{"Other": 1}, "Extra": true})
	wantMerged := map[string]any{"ApiKey": "s3cret", "Extra": true, "Nested": map[string]any{"CamelCase": []any{1, 2}, "Other": 1}}
	if !reflect.DeepEqual(merged, wantMerged) {
		t.Errorf("merged = %v, want %v", merged, wantMerged)
	}
	// A changed .wasm changes the config hash, so a reload picks it up.
	os.WriteFile(filepath.Join(dir, "p.wasm"), []byte("\x00asm\x01\x00\x00\x00\x00"), 0o644)
	c2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Hash == c.Hash {
		t.Error("changing the plugin file did not change the config hash")
	}
}

func TestPluginsValidate(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.wasm"), []byte("x"), 0o644)
	tests := []struct{ plugin, want string }{
		{"{ file: p.wasm, memory_mb: 0 }", "plugins.p.memory_mb (filter \"p\"): is 0; want 1..4096"},
		{"{ file: p.wasm, pool: { max: 0 } }", "plugins.p.pool.max (filter \"p\"): is 0; want at least 1"},
		{"{ file: p.wasm, fail: sometimes }", `plugins.p.fail (filter "p"): unknown fail policy "sometimes"`},
		{"{ file: p.wasm, config: 5 }", "plugins.p.config (filter \"p\"): plugin config must be a mapping, got 5"},
		{"{ sha256: abc }", "plugins.p.file (filter \"p\"): is missing"},
		{"5", "plugins.p (filter \"p\"): expected a mapping with at least file, got 5"},
		{"{ file: p.wasm, timeout: -1s }", "plugins.p.timeout (filter \"p\"): is -1s"},
		{"{ file: p.wasm, max_body_bytes: -1 }", "plugins.p.max_body_bytes (filter \"p\"): is negative (-1)"},
		{"{ file: p.wasm, max_body_bytes: lots }", "plugins.p.max_body_bytes"},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, "weir.yaml")
		os.WriteFile(path, []byte("upstreams: { e: { kind: echo } }\nroutes: [{ name: r, upstream: e }]\nplugins:\n  p: "+tt.plugin+"\n"), 0o644)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.plugin, err, tt.want)
		}
	}
}
