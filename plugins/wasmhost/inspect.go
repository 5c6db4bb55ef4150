package wasmhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
)

// Report describes a module for `weir plugin inspect`.
type Report struct {
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
	// ABI is http-wasm, proxy-wasm or unknown, detected from the exports.
	ABI     string   `json:"abi"`
	Exports []string `json:"exports"`
	Imports []string `json:"imports"`
	// Memory limits in 64 KiB pages; MemoryMax is 0 when the module sets none.
	MemoryExported bool   `json:"memory_exported"`
	MemoryMin      uint32 `json:"memory_min_pages"`
	MemoryMax      uint32 `json:"memory_max_pages,omitempty"`
	// Loads says whether the module would load as a plugin with default settings; LoadError
	// says why not.
	Loads     bool   `json:"loads"`
	LoadError string `json:"load_error,omitempty"`
}

// Inspect compiles wasm and reports its ABI, exports, imports and memory, and whether it would
// load as a plugin (an instance is created and closed to find out).
func Inspect(wasm []byte) (*Report, error) {
	sum := sha256.Sum256(wasm)
	r := &Report{Size: len(wasm), SHA256: hex.EncodeToString(sum[:])}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(memoryCache()))
	defer rt.Close(ctx)
	code, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	r.ABI = DetectABI(code)
	for name, f := range code.ExportedFunctions() {
		r.Exports = append(r.Exports, "func "+name+" "+Signature(f.ParamTypes(), f.ResultTypes()))
	}
	for name, m := range code.ExportedMemories() {
		r.Exports = append(r.Exports, "memory "+name)
		if name == "memory" {
			r.MemoryExported = true
			r.MemoryMin = m.Min()
			if max, ok := m.Max(); ok {
				r.MemoryMax = max
			}
		}
	}
	for _, f := range code.ImportedFunctions() {
		mod, name, _ := f.Import()
		r.Imports = append(r.Imports, "func "+mod+"."+name+" "+Signature(f.ParamTypes(), f.ResultTypes()))
	}
	for _, m := range code.ImportedMemories() {
		mod, name, _ := m.Import()
		r.Imports = append(r.Imports, "memory "+mod+"."+name)
	}
	sort.Strings(r.Exports)
	sort.Strings(r.Imports)
	m, err := Load(Spec{Name: "inspect", Wasm: wasm, CacheDir: "off", PoolMax: 1, Config: []byte("{}")}, zerolog.Nop())
	if err != nil {
		r.LoadError = err.Error()
	} else {
		r.Loads = true
		_ = m.Close()
	}
	return r, nil
}
