package filter

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// abiLoader loads the modules whose bytes start with its prefix and refuses the rest as
// written for another ABI; a module "broken" fails as a module of its own ABI would.
type abiLoader struct{ prefix string }

type loaded struct {
	Filter
	abi string
}

func (l abiLoader) Load(env Env, spec PluginSpec) (Filter, error) {
	switch w := string(spec.Wasm); {
	case w == l.prefix+"broken":
		return nil, errors.New(l.prefix + ": compile: broken")
	case strings.HasPrefix(w, l.prefix):
		return loaded{abi: l.prefix}, nil
	}
	return nil, fmt.Errorf("%s refuses %q: %w", l.prefix, spec.Wasm, ErrOtherABI)
}

func TestLoadPlugin(t *testing.T) {
	if abis := PluginABIs(); len(abis) != 0 {
		t.Fatalf("core/filter registers no ABI itself, got %v", abis)
	}
	if _, err := LoadPlugin(Env{}, PluginSpec{Name: "p"}); err == nil || !strings.Contains(err.Error(), "runs no plugin ABI") {
		t.Fatalf("with no loader: %v", err)
	}
	RegisterPluginLoader("test-b", abiLoader{"b"})
	RegisterPluginLoader("test-a", abiLoader{"a"})
	tests := []struct {
		wasm, wantABI, wantErr string
	}{
		{"a-module", "a", ""},
		{"b-module", "b", ""},
		// A loader's own error is final: a later loader is not asked.
		{"abroken", "", "a: compile: broken"},
		{"c-module", "", `a refuses "c-module": module written for another plugin ABI` + "\n" + `b refuses "c-module"`},
	}
	for _, tt := range tests {
		f, err := LoadPlugin(Env{}, PluginSpec{Name: "p", Wasm: []byte(tt.wasm)})
		var got string
		if l, ok := f.(loaded); ok {
			got = l.abi
		}
		if got != tt.wantABI || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: got ABI %q, error %v; want %q, %q", tt.wasm, got, err, tt.wantABI, tt.wantErr)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("registering an ABI twice did not panic")
		}
	}()
	RegisterPluginLoader("test-a", abiLoader{"a"})
}
