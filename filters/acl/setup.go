package acl

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Name is the name configs use for this filter.
const Name = "acl"

func init() { filter.Register(Name, New) }

// Config is the filter's config. At least one of Allow and Deny is set; with both, Deny wins.
type Config struct {
	// Allow lets through consumers in at least one of these groups, and no one else.
	Allow []string `mapstructure:"allow"`
	// Deny refuses consumers in any of these groups.
	Deny []string `mapstructure:"deny"`
}

// groupName is the syntax of group names in consumers (config/consumers.go).
var groupName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$`)

// New is the filter's factory.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if len(cfg.Allow) == 0 && len(cfg.Deny) == 0 {
		return nil, errors.New("set allow (groups let through) or deny (groups refused), or both")
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{"allow", cfg.Allow}, {"deny", cfg.Deny}} {
		key, list := l.key, l.list
		for i, g := range list {
			if !groupName.MatchString(g) {
				return nil, fmt.Errorf("%s[%d]: %q is not a group name", key, i, g)
			}
			if slices.Index(list, g) < i {
				return nil, fmt.Errorf("%s[%d]: group %q is listed twice", key, i, g)
			}
		}
	}
	for i, g := range cfg.Allow {
		if slices.Contains(cfg.Deny, g) {
			return nil, fmt.Errorf("allow[%d]: group %q is also denied, so it could never pass", i, g)
		}
	}
	known := map[string]bool{}
	for _, k := range env.Consumers.All() {
		for _, g := range k.Groups {
			known[g] = true
		}
	}
	for _, g := range slices.Concat(cfg.Allow, cfg.Deny) {
		if !known[g] {
			// Not an error: consumers may be added by a later reload. Said once, at build.
			env.Log.Warn().Str("group", g).Msg("acl: no consumer is in this group")
		}
	}
	return &Filter{decisions: telemetry.NewAuthDecisions(env.Route, env.Filter), allow: cfg.Allow, deny: cfg.Deny}, nil
}
