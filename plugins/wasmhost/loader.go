package wasmhost

import "github.com/weir-gateway/weir/core/filter"

// The engine builds every plugin through filter.LoadPlugin; this host runs http-wasm modules.
func init() { filter.RegisterPluginLoader(ABIHTTPWasm, loader{}) }

type loader struct{}

func (loader) Load(env filter.Env, spec filter.PluginSpec) (filter.Filter, error) {
	f, err := NewFilter(env, Spec(spec))
	if err != nil {
		return nil, err // not f: a nil *Filter in a filter.Filter is not a nil interface
	}
	return f, nil
}

// otherABIError refuses a module written for another ABI, keeping its message as it is while
// matching filter.ErrOtherABI, so that a loader registered for that ABI gets to try it.
type otherABIError string

func (e otherABIError) Error() string { return string(e) }

func (otherABIError) Is(target error) bool { return target == filter.ErrOtherABI }
