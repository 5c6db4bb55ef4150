package proxywasm

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
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
}

// Inspect compiles wasm (without instantiating it) and reports what a proxy-wasm host needs
// to know about it.
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
	return r, nil
}
