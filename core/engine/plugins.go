package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
)

// pluginFactory returns a factory for the plugin named name when cfg declares one. It knows no
// plugin ABI: the module goes to the loaders the ABI packages registered (filter.LoadPlugin),
// which cmd/weir links in. Plugins are
// looked up before the built-in registry, so a plugin may shadow a built-in filter of the same
// name (a built-in added in a later release never breaks a config that already uses the name).
func pluginFactory(cfg *config.Config, name string) (filter.Factory, bool) {
	pl, ok := cfg.Plugins[name]
	if !ok {
		return nil, false
	}
	return func(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
		// The route's entry is guest config merged over the plugin's, not host settings.
		var route map[string]any
		if err := decode(&route); err != nil {
			return nil, err
		}
		guest := cfg.PluginConfig(name, route)
		if guest == nil {
			guest = map[string]any{}
		}
		js, err := json.Marshal(guest)
		if err != nil {
			return nil, fmt.Errorf("encode plugin config as JSON: %w", err)
		}
		wasm, err := os.ReadFile(pl.Path)
		if err != nil {
			return nil, fmt.Errorf("read plugin %q: %w", name, err)
		}
		sum := sha256.Sum256(wasm)
		if got := hex.EncodeToString(sum[:]); pl.Digest != "" && got != pl.Digest {
			// The file changed between loading the config and building it; the next reload
			// (the file watch or SIGHUP) picks the new one up consistently.
			return nil, fmt.Errorf("plugin %q: %s changed while the config was loading; reload again", name, pl.Path)
		}
		return filter.LoadPlugin(env, filter.PluginSpec{
			Name:     name,
			Wasm:     wasm,
			Config:   js,
			Timeout:  pl.Timeout,
			MemoryMB: pl.MemoryMB,
			PoolMax:  pl.Pool.Max,
			PoolMin:  pl.Pool.Min,
			MaxWait:  pl.Pool.MaxWait,
			FailOpen: pl.Fail == config.FailOpen,
			CacheDir: cfg.Server.PluginCacheDir,
			// What a guest writes into headers obeys the limit a client's headers do.
			MaxHeaderBytes: cfg.Server.MaxHeaderBytes,
			MaxBodyBytes:   int(pl.MaxBodyBytes),
		})
	}, true
}
