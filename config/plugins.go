package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Plugin is one WebAssembly plugin declared under `plugins:`. Its name becomes a filter name
// that routes use like a built-in filter.
type Plugin struct {
	// File is the .wasm path as written; relative paths resolve against the config file's
	// directory (see Path).
	File string `mapstructure:"file" json:"file"`
	// SHA256, when set, pins the file's content: a different file rejects the config.
	SHA256 string `mapstructure:"sha256" json:"sha256,omitempty"`
	// Config is handed to the guest as JSON through get_config, key case preserved. A route
	// may add or override keys in its filter entry.
	Config map[string]any `mapstructure:"-" json:"config,omitempty"`
	// Timeout bounds each guest call.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
	// MemoryMB caps each instance's linear memory.
	MemoryMB int `mapstructure:"memory_mb" json:"memory_mb"`
	// Pool bounds the plugin's instances.
	Pool PluginPool `mapstructure:"pool" json:"pool"`
	// Fail is what a failing plugin does to its request: "closed" answers 5xx, "open" skips it.
	Fail string `mapstructure:"fail" json:"fail"`
	// MaxBodyBytes bounds a body the gateway reads or buffers for the plugin in one request
	// (read_body: over it a request answers 413, a response 502, whatever Fail says) and what
	// the plugin may write through write_body. Zero means the default,
	// DefaultPluginMaxBodyBytes.
	MaxBodyBytes Size `mapstructure:"max_body_bytes" json:"max_body_bytes,omitempty"`

	// Path is File resolved against the config file's directory.
	Path string `mapstructure:"-" json:"-"`
	// Digest is the sha256 of the file when the config was loaded, so that a changed .wasm
	// changes Config.Hash and a reload picks it up. Empty when the file could not be read.
	Digest string `mapstructure:"-" json:"digest"`
	// MinMemoryPages is the initial linear memory the module declares, in 64 KiB pages; zero
	// when the file could not be read or parsed.
	MinMemoryPages uint32 `mapstructure:"-" json:"-"`
}

// PluginPool bounds a plugin's instances. An instance serves one request at a time, from
// handle_request to handle_response, so Max bounds the plugin's concurrent requests.
type PluginPool struct {
	// Max is the most instances alive at once.
	Max int `mapstructure:"max" json:"max"`
	// Min instances are created when the plugin loads (at least one, which is how a broken
	// module fails the load).
	Min int `mapstructure:"min" json:"min"`
	// MaxWait bounds how long a request waits for a free instance when Max are busy.
	MaxWait time.Duration `mapstructure:"max_wait" json:"max_wait"`
}

// Fail policies.
const (
	FailClosed = "closed"
	FailOpen   = "open"
)

// Plugin defaults. This is their one home: the engine hands the plugin host what config
// decided, and the host fills a zero field of a spec made elsewhere (tests, `weir plugin
// inspect`) from these as well.
const (
	DefaultPluginTimeout  = 100 * time.Millisecond
	DefaultPluginMemoryMB = 64
	DefaultPluginPoolMax  = 256
	DefaultPluginPoolMin  = 1
	DefaultPluginMaxWait  = 100 * time.Millisecond
	// DefaultPluginMaxBodyBytes is small enough that a full pool of instances reading bodies at
	// once stays far below the gateway's memory, and large enough for the JSON and form bodies
	// plugins usually inspect.
	DefaultPluginMaxBodyBytes = 1 << 20
	// maxPluginMemoryMB is wasm32's whole address space.
	maxPluginMemoryMB = 4096
)

// DefaultPlugin returns a plugin with every default applied and no file.
func DefaultPlugin() Plugin {
	return Plugin{
		Timeout:      DefaultPluginTimeout,
		MemoryMB:     DefaultPluginMemoryMB,
		Pool:         PluginPool{Max: DefaultPluginPoolMax, Min: DefaultPluginPoolMin, MaxWait: DefaultPluginMaxWait},
		Fail:         FailClosed,
		MaxBodyBytes: DefaultPluginMaxBodyBytes,
	}
}

// pluginName is the syntax of plugin names: they are filter names, so keep them plain.
var pluginName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// decodePlugins reads the plugins section. Each plugin's config subtree is taken out before
// strict decoding, so its keys keep their case, and its file is hashed.
func decodePlugins(p *problems, sec any, c *Config) {
	if sec == nil {
		return
	}
	m, ok := sec.(map[string]any)
	if !ok {
		p.add("plugins", "", "", fmt.Errorf("expected a mapping of plugin names, got %s", yamlKind(sec)))
		return
	}
	c.Plugins = make(map[string]Plugin, len(m))
	for _, name := range sortedKeys(m) {
		path := "plugins." + name
		body, ok := m[name].(map[string]any)
		if !ok {
			p.add(path, "", name, fmt.Errorf("expected a mapping with at least file, got %s", yamlKind(m[name])))
			continue
		}
		pl := DefaultPlugin()
		rest := make(map[string]any, len(body))
		for k, v := range body {
			if strings.EqualFold(k, "config") {
				switch cv := v.(type) {
				case nil:
				case map[string]any:
					pl.Config = cv
				default:
					p.add(path+"."+k, "", name, fmt.Errorf("plugin config must be a mapping, got %s", yamlKind(v)))
				}
				continue
			}
			rest[k] = v
		}
		if err := decodeInto(rest, &pl, path); err != nil {
			p.addAll(err, "", name)
		}
		pl.Fail = strings.ToLower(pl.Fail)
		if pl.File != "" {
			pl.Path = pl.File
			if !filepath.IsAbs(pl.Path) && c.File != "" {
				pl.Path = filepath.Join(filepath.Dir(c.File), pl.Path)
			}
			if b, err := os.ReadFile(pl.Path); err == nil {
				sum := sha256.Sum256(b)
				pl.Digest = hex.EncodeToString(sum[:])
				pl.MinMemoryPages, _ = wasmMinMemoryPages(b)
			}
		}
		c.Plugins[name] = pl
	}
}

// validatePlugins checks every plugin's settings and that its file is there (and matches its
// pin). Whether the module loads is checked when the engine builds the config.
func validatePlugins(p *problems, c *Config) {
	for _, name := range sortedKeys(c.Plugins) {
		pl := c.Plugins[name]
		path := "plugins." + name
		if !pluginName.MatchString(name) {
			p.add(path, "", name, fmt.Errorf("plugin name %q: use letters, digits, '.', '_' and '-'", name))
		}
		switch {
		case strings.TrimSpace(pl.File) == "":
			p.add(path+".file", "", name, errors.New("is missing; set it to the plugin's .wasm file"))
		case pl.Digest == "":
			_, err := os.Stat(pl.Path)
			if err == nil {
				err = errors.New("cannot be read")
			}
			p.add(path+".file", "", name, fmt.Errorf("%s: %w", pl.Path, err))
		}
		if pl.SHA256 != "" {
			want := strings.ToLower(strings.TrimPrefix(pl.SHA256, "sha256:"))
			if len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "" {
				p.add(path+".sha256", "", name, fmt.Errorf("%q is not a hex sha256 (64 hex digits)", pl.SHA256))
			} else if pl.Digest != "" && pl.Digest != want {
				p.add(path+".sha256", "", name, fmt.Errorf("%s has sha256 %s, but the config pins %s", pl.Path, pl.Digest, want))
			}
		}
		if pl.Timeout <= 0 {
			p.add(path+".timeout", "", name, fmt.Errorf("is %s; a guest call needs a positive deadline", pl.Timeout))
		}
		if pl.MemoryMB < 1 || pl.MemoryMB > maxPluginMemoryMB {
			p.add(path+".memory_mb", "", name, fmt.Errorf("is %d; want 1..%d", pl.MemoryMB, maxPluginMemoryMB))
		} else if err := MemoryBelowMinimum(pl.MemoryMB, pl.MinMemoryPages); err != nil {
			p.add(path+".memory_mb", "", name, fmt.Errorf("%w (%s)", err, pl.Path))
		}
		if pl.Pool.Max < 1 {
			p.add(path+".pool.max", "", name, fmt.Errorf("is %d; want at least 1", pl.Pool.Max))
		}
		if pl.Pool.Min < 1 || (pl.Pool.Max >= 1 && pl.Pool.Min > pl.Pool.Max) {
			p.add(path+".pool.min", "", name, fmt.Errorf("is %d; want 1..pool.max (%d)", pl.Pool.Min, pl.Pool.Max))
		}
		if pl.Pool.MaxWait < 0 {
			p.add(path+".pool.max_wait", "", name, fmt.Errorf("is negative (%s)", pl.Pool.MaxWait))
		}
		if pl.MaxBodyBytes < 0 {
			p.add(path+".max_body_bytes", "", name, fmt.Errorf("is negative (%d)", pl.MaxBodyBytes))
		}
		if pl.Fail != FailClosed && pl.Fail != FailOpen {
			p.add(path+".fail", "", name, fmt.Errorf("unknown fail policy %q (want closed or open)", pl.Fail))
		}
	}
}

// hasPlugin reports whether c declares a plugin named name.
func hasPlugin(c *Config, name string) bool { _, ok := c.Plugins[name]; return ok }

// PluginConfig returns the config a route's use of plugin name hands the guest: the plugin's
// config with the route's entry merged over it (mappings merge key by key, at every depth;
// anything else in the route's entry replaces the plugin's value).
func (c *Config) PluginConfig(name string, route map[string]any) map[string]any {
	return mergeMaps(c.Plugins[name].Config, route)
}

func mergeMaps(base, over map[string]any) map[string]any {
	if len(over) == 0 {
		return base
	}
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if om, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}
