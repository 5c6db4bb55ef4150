package proxywasm

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"

	"github.com/weir-gateway/weir/plugins/wasmhost"
)

// Report describes a proxy-wasm module for `weir plugin inspect`.
type Report struct {
	// Version is the ABI version the module declares ("" when it is not a proxy-wasm module).
	Version string `json:"version"`
	// Callbacks are the proxy_on_* functions it exports.
	Callbacks []string `json:"callbacks"`
	// Missing are imports this host does not provide: the module would not load.
	Missing []string `json:"missing_imports,omitempty"`
	// Unimplemented are imported host functions that exist but answer Unimplemented.
	Unimplemented []string `json:"unimplemented_imports,omitempty"`
	// Loads says whether the module would load as a plugin with default settings and an empty
	// JSON config (its instances are started: proxy_on_vm_start and proxy_on_configure run);
	// LoadError says why not.
	Loads     bool   `json:"loads"`
	LoadError string `json:"load_error,omitempty"`
}

// Inspect compiles wasm and reports what a proxy-wasm host needs to know about it, and
// whether it loads (one instance is started and closed to find out).
func Inspect(wasm []byte) (*Report, error) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	code, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	r := &Report{Version: Version(code), Missing: MissingImports(code)}
	for name := range code.ExportedFunctions() {
		if strings.HasPrefix(name, "proxy_on_") {
			r.Callbacks = append(r.Callbacks, name)
		}
	}
	unimpl := map[string]bool{}
	for _, n := range Unimplemented() {
		unimpl[n] = true
	}
	for _, f := range code.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod == envModule && unimpl[name] {
			r.Unimplemented = append(r.Unimplemented, name)
		}
	}
	sort.Strings(r.Callbacks)
	sort.Strings(r.Unimplemented)
	if r.Version == "" {
		r.LoadError = "not a proxy-wasm module (it exports no proxy_abi_version_0_1_0, _0_2_0 or _0_2_1)"
		return r, nil
	}
	p, err := load(wasmhost.Spec{Name: "inspect", Wasm: wasm, CacheDir: "off", PoolMin: 1, PoolMax: 1, Config: []byte("{}")}, zerolog.Nop())
	if err != nil {
		r.LoadError = err.Error()
	} else {
		r.Loads = true
		_ = p.Close()
	}
	return r, nil
}
