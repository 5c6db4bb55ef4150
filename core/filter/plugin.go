package filter

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// PluginSpec is one WebAssembly plugin as the config decided it: the module's bytes, the
// guest's config and the host's limits, every default already applied (config keeps them).
type PluginSpec struct {
	// Name is the plugin's name, which routes use as a filter name.
	Name string
	// Wasm is the module's bytes.
	Wasm []byte
	// Config is handed to the guest (JSON, key case as written).
	Config []byte
	// Timeout bounds each guest call.
	Timeout time.Duration
	// MemoryMB caps each instance's linear memory.
	MemoryMB int
	// PoolMax bounds live instances; PoolMin are created when the module loads.
	PoolMax, PoolMin int
	// MaxWait bounds how long a request waits for a free instance when PoolMax are busy.
	MaxWait time.Duration
	// FailOpen skips the plugin when it fails instead of answering with an error.
	FailOpen bool
	// MaxBodyBytes bounds a body the host reads or buffers for the guest and the bytes the
	// guest may write as a body, per request.
	MaxBodyBytes int
	// MaxHeaderBytes bounds the header bytes the guest may write per request (the server's
	// max_header_bytes, the limit a client's headers obey).
	MaxHeaderBytes int
	// CacheDir is the compilation cache directory: "" for the default, "off" for none.
	CacheDir string
}

// A PluginLoader makes WebAssembly modules written for one plugin ABI into filters. Each ABI
// package registers one from init (RegisterPluginLoader), so the engine builds a plugin
// without knowing which ABIs exist; a new ABI is one more registration.
type PluginLoader interface {
	// Load builds spec as a filter for env's route. It runs at config build, like a Factory.
	// A module written for another ABI is refused with an error that matches ErrOtherABI
	// (errors.Is), which lets the next loader try it.
	Load(env Env, spec PluginSpec) (Filter, error)
}

// ErrOtherABI is matched by a loader's error for a module written for an ABI it does not run.
var ErrOtherABI = errors.New("module written for another plugin ABI")

var (
	loadersMu sync.RWMutex
	loaders   = map[string]PluginLoader{}
)

// RegisterPluginLoader makes modules of the ABI named abi loadable. It is called from init
// functions and panics on a duplicate name, which is a programming error.
func RegisterPluginLoader(abi string, l PluginLoader) {
	loadersMu.Lock()
	defer loadersMu.Unlock()
	if _, dup := loaders[abi]; dup {
		panic(fmt.Sprintf("filter: plugin ABI %q registered twice", abi))
	}
	loaders[abi] = l
}

// PluginABIs lists the registered plugin ABIs, sorted.
func PluginABIs() []string {
	loadersMu.RLock()
	defer loadersMu.RUnlock()
	out := make([]string, 0, len(loaders))
	for n := range loaders {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LoadPlugin builds spec as a filter with the first loader, in ABI name order, that does not
// refuse it as written for another ABI. When every loader refuses it, the error says why each
// did (with one loader: that loader's error as it is).
func LoadPlugin(env Env, spec PluginSpec) (Filter, error) {
	var refusals []error
	for _, abi := range PluginABIs() {
		loadersMu.RLock()
		l := loaders[abi]
		loadersMu.RUnlock()
		f, err := l.Load(env, spec)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, ErrOtherABI) {
			return nil, err
		}
		refusals = append(refusals, err)
	}
	if len(refusals) == 0 {
		return nil, fmt.Errorf("plugin %q: this build of the gateway runs no plugin ABI", spec.Name)
	}
	return nil, errors.Join(refusals...)
}
