package headers

import (
	"fmt"
	"net/textproto"
	"sort"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/httpcheck"
)

// Name is the name configs use for this filter.
const Name = "headers"

func init() { filter.Register(Name, New) }

// Config is the filter's config: one set of edits per phase.
type Config struct {
	Request  PhaseConfig `mapstructure:"request"`
	Response PhaseConfig `mapstructure:"response"`
}

// PhaseConfig lists the edits of one phase. Set replaces every value of a header, Add appends one
// more value (a list appends several), Remove deletes every value.
type PhaseConfig struct {
	Set    map[string]any `mapstructure:"set"`
	Add    map[string]any `mapstructure:"add"`
	Remove []string       `mapstructure:"remove"`
}

// New is the filter's factory: it decodes and validates the config and turns every name and
// value into the byte slices the hot path hands to fasthttp, so requests only copy bytes.
func New(_ filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		// Returned as is: its *config.Error values carry key paths the engine completes
		// with the file, route and filter.
		return nil, err
	}
	req, err := compilePhase(cfg.Request)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	resp, err := compilePhase(cfg.Response)
	if err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if req.empty() && resp.empty() {
		return nil, fmt.Errorf("nothing to do: set, add or remove at least one header under request or response")
	}
	return &Filter{req: req, resp: resp}, nil
}

func compilePhase(pc PhaseConfig) (phase, error) {
	var p phase
	seen := map[string]string{} // canonical name -> list it appeared in, to catch "x-a" and "X-A"

	names := make([]string, 0, len(pc.Remove))
	for _, n := range pc.Remove {
		canon, err := httpcheck.EditableName(n)
		if err != nil {
			return p, fmt.Errorf("remove: %w", err)
		}
		if prev, dup := seen[canon]; dup {
			return p, fmt.Errorf("remove: header %q listed twice (as %q and %q)", canon, prev, n)
		}
		seen[canon] = n
		names = append(names, n)
	}
	sortByCanonical(names)
	for _, n := range names {
		p.remove = append(p.remove, []byte(n))
	}

	var err error
	if p.set, err = compileValues("set", pc.Set, false); err != nil {
		return p, err
	}
	if p.add, err = compileValues("add", pc.Add, true); err != nil {
		return p, err
	}
	return p, nil
}

// compileValues validates one name→value map and returns its pairs sorted by canonical name, so
// the order of application never depends on Go's map iteration order.
func compileValues(op string, m map[string]any, allowList bool) ([]pair, error) {
	names := make([]string, 0, len(m))
	seen := map[string]string{}
	for n := range m {
		canon, err := httpcheck.EditableName(n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if prev, dup := seen[canon]; dup {
			// Both spellings name the same header; which one wins would be arbitrary.
			return nil, fmt.Errorf("%s: header %q given twice (as %q and %q)", op, canon, prev, n)
		}
		seen[canon] = n
		names = append(names, n)
	}
	sortByCanonical(names)

	var out []pair
	for _, n := range names {
		values, err := valuesOf(m[n], allowList)
		if err != nil {
			return nil, fmt.Errorf("%s: header %q: %w", op, n, err)
		}
		for _, v := range values {
			if err := httpcheck.Value(v); err != nil {
				return nil, fmt.Errorf("%s: header %q: %w", op, n, err)
			}
			out = append(out, pair{name: []byte(n), value: []byte(v)})
		}
	}
	return out, nil
}

func valuesOf(v any, allowList bool) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		if !allowList {
			return nil, fmt.Errorf("value must be a string (a list is only allowed under add)")
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("empty list of values")
		}
		out := make([]string, 0, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("value %d of the list must be a string (quote it)", i+1)
			}
			out = append(out, s)
		}
		return out, nil
	case []string:
		if !allowList {
			return nil, fmt.Errorf("value must be a string (a list is only allowed under add)")
		}
		if len(v) == 0 {
			return nil, fmt.Errorf("empty list of values")
		}
		return v, nil
	case nil:
		return nil, fmt.Errorf("missing value (write \"\" for an empty one)")
	default:
		// A YAML number or boolean would be re-spelled by the parser (1.10 becomes 1.1), so the
		// value is only taken when written as a string. Not quoted: it may be a credential.
		return nil, fmt.Errorf("value must be a string (quote it)")
	}
}

func sortByCanonical(names []string) {
	sort.Slice(names, func(i, j int) bool {
		return textproto.CanonicalMIMEHeaderKey(names[i]) < textproto.CanonicalMIMEHeaderKey(names[j])
	})
}
