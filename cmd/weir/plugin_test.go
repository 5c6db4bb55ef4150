package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

func TestPluginInspect(t *testing.T) {
	dir := t.TempDir()
	proxy := (&wasmtest.Module{MemMin: 1, MemMax: 4, Funcs: []wasmtest.Func{
		{Params: []byte{wasmtest.I32, wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(1), Export: "proxy_on_context_create"},
	}}).Encode()
	os.WriteFile(filepath.Join(dir, "proxy.wasm"), proxy, 0o644)
	// A v0.2.1 module importing a host function that answers Unimplemented and one no version
	// of the ABI has.
	gaps := (&wasmtest.Module{MemMin: 1, MemMax: 4, Imports: []wasmtest.Import{
		{Module: "env", Name: "proxy_grpc_call", Params: bytes.Repeat([]byte{wasmtest.I32}, 12), Results: []byte{wasmtest.I32}},
		{Module: "env", Name: "proxy_no_such_call", Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}},
	}, Funcs: []wasmtest.Func{
		{Body: wasmtest.NewCode(), Export: "proxy_abi_version_0_2_1"},
		{Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(16), Export: "proxy_on_memory_allocate"},
		{Params: []byte{wasmtest.I32, wasmtest.I32}, Body: wasmtest.NewCode(), Export: "proxy_on_context_create"},
	}}).Encode()
	os.WriteFile(filepath.Join(dir, "gaps.wasm"), gaps, 0o644)
	os.WriteFile(filepath.Join(dir, "junk.wasm"), []byte("junk"), 0o644)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"http-wasm", []string{"../../config/plugins/hello.wasm"}, 0,
			[]string{"abi      http-wasm", "func handle_request () -> (i64)", "func http_handler.get_config (i32, i32) -> (i32)", "loads    yes"}, ""},
		{"json", []string{"-json", "../../config/plugins/hello.wasm"}, 0, []string{`"abi": "http-wasm"`, `"loads": true`}, ""},
		{"proxy-wasm", []string{"../../plugins/proxywasm/testdata/filter.wasm"}, 0,
			[]string{"abi      proxy-wasm 0.2.1", "callbacks\n    proxy_on_configure\n", "    proxy_on_request_headers\n", "loads    yes"}, ""},
		{"proxy-wasm json", []string{"-json", "../../plugins/proxywasm/testdata/filter.wasm"}, 0,
			[]string{`"abi": "proxy-wasm"`, `"proxy_wasm": {`, `"version": "0.2.1"`, `"loads": true`}, ""},
		{"proxy-wasm gaps", []string{filepath.Join(dir, "gaps.wasm")}, 1,
			[]string{"abi      proxy-wasm 0.2.1", "imports this host does not provide (the module cannot load)\n    env.proxy_no_such_call (i32) -> (i32)\n",
				"imports that answer Unimplemented\n    proxy_grpc_call\n", "loads    no:", "proxy_no_such_call"}, ""},
		{"proxy-wasm unversioned", []string{filepath.Join(dir, "proxy.wasm")}, 1,
			[]string{"abi      proxy-wasm (exports proxy_on_* but no proxy_abi_version_*)", "memory   1..4 pages (64 KiB..256 KiB)", "loads    no:", "proxy_abi_version"}, ""},
		{"not wasm", []string{filepath.Join(dir, "junk.wasm")}, 1, nil, "compile"},
		{"missing", []string{filepath.Join(dir, "nope.wasm")}, 1, nil, "no such file"},
		{"no args", nil, 2, nil, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := cli(append([]string{"plugin", "inspect"}, tt.args...), &out, &errb); got != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", got, tt.code, errb.String())
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out.String())
				}
			}
			if !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tt.stderr)
			}
		})
	}
}

func TestDetectLanguage(t *testing.T) {
	tests := []struct {
		files []string
		want  string
	}{
		{[]string{"go.mod", "main.go"}, langGo},
		{[]string{"main.go"}, langGo},
		{[]string{"Cargo.toml", "src/lib.rs"}, langRust},
		{[]string{"lib.rs"}, langRust},
		{[]string{"main.rs"}, langRust},
		{[]string{"asconfig.json", "assembly/index.ts"}, langAS},
		{[]string{"index.ts"}, langAS},
		{[]string{"plugin.c", "weir.h"}, langC},
		{[]string{"guest.wat"}, langWAT},
		{[]string{"README.md"}, ""},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		for _, f := range tt.files {
			os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
		got, err := detectLanguage(dir)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("%v: got %q, %v; want %q", tt.files, got, err, tt.want)
		}
	}
}

func TestPluginBuildMissingToolchain(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "plugin.c"), []byte("int x;"), 0o644)
	t.Setenv("PATH", t.TempDir()) // nothing on it
	var out, errb bytes.Buffer
	if code := cli([]string{"plugin", "build", "-o", filepath.Join(dir, "p.wasm"), dir}, &out, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if want := "clang not found in PATH; apt-get install clang lld wasi-libc"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q lacks %q", errb.String(), want)
	}
}

// TestPluginBuildC builds the C SDK's header example when clang can target wasm32-wasi.
func TestPluginBuildC(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32); CI installs it")
	}
	src := "../../sdk/c/examples/add-header"
	if _, err := os.Stat(src); err != nil {
		t.Skip("the C SDK example is not in this tree")
	}
	probe := t.TempDir()
	os.WriteFile(filepath.Join(probe, "p.c"), []byte("int x;"), 0o644)
	if err := exec.Command("clang", "--target=wasm32-wasi", "-mexec-model=reactor", "-o", filepath.Join(probe, "p.wasm"), filepath.Join(probe, "p.c")).Run(); err != nil {
		t.Skipf("clang cannot link for wasm32-wasi (apt-get install lld wasi-libc libclang-rt-14-dev-wasm32): %v", err)
	}
	out := filepath.Join(t.TempDir(), "c.wasm")
	var stdout, stderr bytes.Buffer
	if code := cli([]string{"plugin", "build", "-o", out, src}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "(c, ") || !strings.Contains(stdout.String(), "http-wasm") {
		t.Errorf("stdout = %q", stdout.String())
	}
}
