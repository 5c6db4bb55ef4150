package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// memModule is a WebAssembly binary whose only content is a memory of min pages; imported puts
// it in the import section instead, behind a function import.
func memModule(min byte, imported bool) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	if imported {
		sec := []byte{2, 1, 'e', 1, 'f', 0, 0, 1, 'e', 1, 'm', 2, 1, min, 0x80, 1}
		return append(append(b, 2, byte(len(sec))), sec...)
	}
	return append(b, 5, 3, 1, 0, min)
}

func TestWasmMinMemoryPages(t *testing.T) {
	for _, tt := range []struct {
		name  string
		wasm  []byte
		pages uint32
		ok    bool
	}{
		{"memory section", memModule(42, false), 42, true},
		{"imported", memModule(17, true), 17, true},
		{"no memory", []byte("\x00asm\x01\x00\x00\x00"), 0, true},
		{"not wasm", []byte("junk"), 0, false},
		{"truncated", []byte("\x00asm\x01\x00\x00\x00\x05\x09\x01"), 0, false},
	} {
		if p, ok := wasmMinMemoryPages(tt.wasm); p != tt.pages || ok != tt.ok {
			t.Errorf("%s: got %d, %v; want %d, %v", tt.name, p, ok, tt.pages, tt.ok)
		}
	}
}

// TestPluginMemoryBelowModule: a memory_mb smaller than the module's initial memory is reported
// once, on plugins.NAME.memory_mb, with its line and honest sizes.
func TestPluginMemoryBelowModule(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.wasm"), memModule(42, false), 0o644)
	path := filepath.Join(dir, "weir.yaml")
	os.WriteFile(path, []byte(`upstreams:
  be: { kind: echo }
plugins:
  hello:
    file: go.wasm
    memory_mb: 2
routes:
  - name: a
    match: { path_prefix: / }
    upstream: be
    filters: [ { hello: {} } ]
`), 0o644)
	_, err := Load(path)
	if err == nil {
		t.Fatal("loaded")
	}
	want := `weir.yaml:6: plugins.hello.memory_mb (filter "hello"): 2 MiB is below the module's minimum memory of 2.7 MiB (42 pages of 64 KiB); set at least 3`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error\n%v\nlacks\n%s", err, want)
	}
	if MemoryBelowMinimum(3, 42) != nil || MemoryBelowMinimum(1, 16) != nil || MemoryBelowMinimum(1, 17) == nil {
		t.Error("MemoryBelowMinimum: wrong boundary")
	}
}
