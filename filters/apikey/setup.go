package apikey

import (
	"fmt"
	"strings"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "apikey"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Header is the request header holding the key. When neither Header nor Query is set it is
	// DefaultHeader.
	Header string `mapstructure:"header"`
	// Query is the query parameter holding the key. With Header, the header is looked at first.
	Query string `mapstructure:"query"`
	// HideCredentials removes the key (the header, the query parameter) before forwarding.
	HideCredentials bool `mapstructure:"hide_credentials"`
	// Anonymous names a declared consumer that a request presenting no key continues as.
	// A wrong key is refused all the same.
	Anonymous string `mapstructure:"anonymous"`
	// Realm is the realm of the WWW-Authenticate challenge.
	Realm string `mapstructure:"realm"`
}

// DefaultHeader is where the key is looked for when the config names no place.
const DefaultHeader = "X-API-Key"

// defaultRealm names the gateway in challenges.
const defaultRealm = "weir"

// New is the filter's factory.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Header == "" && cfg.Query == "" {
		cfg.Header = DefaultHeader
	}
	f := &Filter{decisions: telemetry.NewAuthDecisions(env.Route, env.Filter), consumers: env.Consumers, hide: cfg.HideCredentials}
	if cfg.Header != "" {
		canon, err := httpcheck.EditableName(cfg.Header)
		if err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		if canon == "Host" || canon == "Content-Type" {
			return nil, fmt.Errorf("header: %q cannot carry an API key", canon)
		}
		f.spellings = Spellings(canon)
	}
	if cfg.Query != "" {
		if strings.ContainsAny(cfg.Query, "&=#? \t\r\n") {
			return nil, fmt.Errorf("query: %q is not a plain parameter name", cfg.Query)
		}
		f.query, f.queryName = []byte(cfg.Query), cfg.Query
	}
	realm := cfg.Realm
	if realm == "" {
		realm = defaultRealm
	}
	if strings.ContainsAny(realm, "\"\\") {
		return nil, fmt.Errorf("realm: %q may not contain '\"' or '\\'", realm)
	}
	if err := httpcheck.Value(realm); err != nil {
		return nil, fmt.Errorf("realm: %w", err)
	}
	f.challenge = []byte(`Key realm="` + realm + `"`)
	if cfg.Anonymous != "" {
		f.anonymous = env.Consumers.Named(cfg.Anonymous)
		if f.anonymous == nil {
			return nil, fmt.Errorf("anonymous: consumer %q is not declared under consumers", cfg.Anonymous)
		}
	}
	if !hasKeys(env.Consumers) {
		// Not an error: a config may declare the route before its consumers. Said once, at build.
		env.Log.Warn().Msg("apikey: no consumer has an API key, so every request presenting one is refused")
	}
	return f, nil
}

func hasKeys(cs *filter.Consumers) bool {
	for _, k := range cs.All() {
		if len(k.APIKeys) > 0 {
			return true
		}
	}
	return false
}

// maxSeparators bounds the '-' of a header name whose '_' spellings are all tried; past it only
// the name and its all-'_' spelling are (no real key header has five dashes).
const maxSeparators = 4

// Spellings returns name and every spelling of it with some '-' written '_'.
func Spellings(name string) []string {
	var seps []int
	for i := 0; i < len(name); i++ {
		if name[i] == '-' {
			seps = append(seps, i)
		}
	}
	if len(seps) > maxSeparators {
		return []string{name, strings.ReplaceAll(name, "-", "_")}
	}
	out := make([]string, 0, 1<<len(seps))
	for mask := 0; mask < 1<<len(seps); mask++ {
		b := []byte(name)
		for j, at := range seps {
			if mask&(1<<j) != 0 {
				b[at] = '_'
			}
		}
		out = append(out, string(b))
	}
	return out
}
