package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Redaction replaces secret values in Redacted.
const Redaction = "[redacted]"

// secretWords mark a filter config key as secret when its name contains one of them, ignoring
// case: "api_key", "client_secret", "Password", "token".
var secretWords = []string{"token", "secret", "password", "key"}

// IsSecretKey reports whether a config key's value must not be shown (admin API, logs).
func IsSecretKey(name string) bool {
	l := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// computeHash returns the sha256 of c's canonical JSON. encoding/json writes struct fields in
// declaration order and map keys sorted, so equal configs hash equally whatever the key order
// or formatting of the file; environment overrides are included because they are decoded in.
func (c *Config) computeHash() string {
	cp := *c
	cp.Hash = ""
	b, err := json.Marshal(&cp)
	if err != nil {
		// Only reachable with filter config values JSON cannot encode (NaN, ±Inf). Such a config
		// must still never hash equal to another one, so hash the Go syntax instead.
		b = fmt.Appendf(nil, "%#v", cp)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Redacted returns a copy of c that is safe to show: the admin token and every filter config
// value whose key looks secret (see IsSecretKey) are replaced by "[redacted]". c is not changed;
// the copy shares nothing mutable with it.
func (c *Config) Redacted() *Config {
	if c == nil {
		return nil
	}
	cp := *c
	if cp.Server.AdminToken != "" {
		cp.Server.AdminToken = Redaction
	}
	cp.Server.TrustedProxies = slices.Clone(c.Server.TrustedProxies)
	if c.Upstreams != nil {
		cp.Upstreams = make(map[string]Upstream, len(c.Upstreams))
		for k, u := range c.Upstreams {
			u.Targets = slices.Clone(u.Targets)
			cp.Upstreams[k] = u
		}
	}
	cp.lines = maps.Clone(c.lines)
	if c.Routes != nil {
		cp.Routes = make([]Route, len(c.Routes))
		for i, r := range c.Routes {
			r.Match.Methods = slices.Clone(r.Match.Methods)
			r.Match.Headers = maps.Clone(r.Match.Headers)
			if r.Filters != nil {
				fs := make([]FilterConfig, len(r.Filters))
				for j, f := range r.Filters {
					fs[j] = FilterConfig{Name: f.Name}
					if f.Config != nil {
						fs[j].Config = redactMap(f.Config)
					}
				}
				r.Filters = fs
			}
			cp.Routes[i] = r
		}
	}
	if c.Plugins != nil {
		// Plugin configs often carry API keys for the guest; redact them like filter configs.
		cp.Plugins = make(map[string]Plugin, len(c.Plugins))
		for k, p := range c.Plugins {
			if p.Config != nil {
				p.Config = redactMap(p.Config)
			}
			cp.Plugins[k] = p
		}
	}
	return &cp
}

// redactMap deep-copies m, redacting secret keys at every depth.
func redactMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if IsSecretKey(k) && v != nil {
			out[k] = Redaction
			continue
		}
		out[k] = redactValue(v)
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return redactMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(e)
		}
		return out
	}
	return v
}
