package wasmhost

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// TestLoaderRegistered builds plugins the way the engine does, through filter.LoadPlugin.
func TestLoaderRegistered(t *testing.T) {
	proxyWasm := (&wasmtest.Module{MemMin: 1, MemMax: -1, Funcs: []wasmtest.Func{
		{Params: []byte{wasmtest.I32, wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(1), Export: "proxy_on_context_create"},
	}}).Encode()
	tests := []struct {
		name     string
		wasm     []byte
		wantErr  string
		otherABI bool // the error lets another ABI's loader try the module
	}{
		{"http-wasm", headerGuest(), "", false},
		{"proxy-wasm", proxyWasm, "not an http-wasm guest", true},
		{"not wasm", []byte("hello"), "compile", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := filter.Env{Route: "r", Filter: "p", Shared: filter.NewShared(), Log: zerolog.Nop()}
			f, err := filter.LoadPlugin(env, filter.PluginSpec{Name: "loader-" + tt.name, Wasm: tt.wasm, CacheDir: "off", PoolMax: 1})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadPlugin: %v", err)
				}
				if _, ok := f.(*Filter); !ok {
					t.Fatalf("got a %T, want a *Filter", f)
				}
				if err := f.(io.Closer).Close(); err != nil {
					t.Error(err)
				}
				return
			}
			if f != nil || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, %v; want no filter and an error containing %q", f, err, tt.wantErr)
			}
			if got := errors.Is(err, filter.ErrOtherABI); got != tt.otherABI {
				t.Errorf("errors.Is(err, ErrOtherABI) = %t, want %t", got, tt.otherABI)
			}
		})
	}
}

// TestSpecDefaultsAreConfigs: a spec's zero fields take config's defaults, so a spec the
// engine fills from a config that sets nothing is the same module (same key) as a zero spec.
func TestSpecDefaultsAreConfigs(t *testing.T) {
	d := config.DefaultPlugin()
	fromConfig := Spec{
		Name: "p", Wasm: []byte("w"), Config: []byte("{}"),
		Timeout: d.Timeout, MemoryMB: d.MemoryMB, PoolMax: d.Pool.Max, PoolMin: d.Pool.Min, MaxWait: d.Pool.MaxWait,
		FailOpen: d.Fail == config.FailOpen, MaxBodyBytes: int(d.MaxBodyBytes), MaxHeaderBytes: config.DefaultMaxHeaderBytes,
	}
	zero := Spec{Name: "p", Wasm: []byte("w"), Config: []byte("{}")}
	if zero.Key() != fromConfig.Key() {
		t.Errorf("zero spec key %s, config-default spec key %s", zero.Key(), fromConfig.Key())
	}
	zero.defaults()
	if zero.Timeout != 100*time.Millisecond || zero.MaxBodyBytes != 1<<20 || zero.MaxHeaderBytes != 16<<10 {
		t.Errorf("defaults = %+v", zero)
	}
}
