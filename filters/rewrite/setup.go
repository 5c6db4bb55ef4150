package rewrite

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/weir-gateway/weir/core/filter"
)

// Name is the name configs use for this filter.
const Name = "rewrite"

func init() { filter.Register(Name, New) }

// Config is the filter's config: at most one of StripPrefix, Path and Regex, optionally with
// AddPrefix. Pointers tell "not given" from "given empty", which is an error.
type Config struct {
	StripPrefix *string      `mapstructure:"strip_prefix"`
	Path        *string      `mapstructure:"path"`
	Regex       *RegexConfig `mapstructure:"regex"`
	AddPrefix   *string      `mapstructure:"add_prefix"`
}

// RegexConfig replaces every match of Match in the path with Replace, in which $1, ${1}, $name and
// ${name} stand for capture groups and $$ for a dollar sign, as in Go's regexp.Expand. Anchoring
// Match (^...$) rewrites the whole path.
type RegexConfig struct {
	Match   string `mapstructure:"match"`
	Replace string `mapstructure:"replace"`
}

// New is the filter's factory: it validates the config, compiles the regular expression and
// checks every group its template refers to, so a typo fails the build rather than a request.
func New(_ filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		// Returned as is: its *config.Error values carry key paths the engine completes
		// with the file, route and filter.
		return nil, err
	}
	f := &Filter{}
	actions := 0
	if cfg.StripPrefix != nil {
		actions++
		p, err := checkPrefix("strip_prefix", *cfg.StripPrefix)
		if err != nil {
			return nil, err
		}
		f.mode, f.strip = modeStrip, []byte(p)
	}
	if cfg.Path != nil {
		actions++
		if err := checkPath("path", *cfg.Path); err != nil {
			return nil, err
		}
		f.mode, f.path = modePath, []byte(*cfg.Path)
	}
	if cfg.Regex != nil {
		actions++
		re, err := compileRegex(*cfg.Regex)
		if err != nil {
			return nil, err
		}
		f.mode, f.re, f.template = modeRegex, re, []byte(cfg.Regex.Replace)
	}
	if actions > 1 {
		return nil, fmt.Errorf("strip_prefix, path and regex are exclusive: give one of them")
	}
	if cfg.AddPrefix != nil {
		p, err := checkPrefix("add_prefix", *cfg.AddPrefix)
		if err != nil {
			return nil, err
		}
		f.add = []byte(p)
	} else if actions == 0 {
		return nil, fmt.Errorf("no rewrite given: set one of strip_prefix, path or regex, or add_prefix")
	}
	return f, nil
}

// checkPrefix validates a prefix and returns it without its trailing slash, so "/api" and "/api/"
// mean the same thing and joining it with a path never doubles the slash.
func checkPrefix(key, p string) (string, error) {
	if err := checkPath(key, p); err != nil {
		return "", err
	}
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "", fmt.Errorf("%s %q is only slashes: nothing to strip or add", key, "/")
	}
	return p, nil
}

// checkPath accepts an absolute path of bytes that may appear in a request target's path as
// sent on the wire (anything else must be percent-encoded in the config already).
func checkPath(key, p string) error {
	if p == "" {
		return fmt.Errorf("%s is empty", key)
	}
	if p[0] != '/' {
		return fmt.Errorf("%s %q must start with /", key, p)
	}
	if i := strings.IndexFunc(p, badPathRune); i >= 0 {
		return fmt.Errorf("%s %q: byte %q is not allowed in a path (percent-encode it; the query string is kept as sent)", key, p, p[i])
	}
	return nil
}

// badPathRune rejects the query and fragment delimiters, spaces, controls and non-ASCII.
func badPathRune(r rune) bool {
	return r == '?' || r == '#' || r <= ' ' || r >= 0x7f
}

func compileRegex(rc RegexConfig) (*regexp.Regexp, error) {
	if rc.Match == "" {
		return nil, fmt.Errorf("regex: match is empty")
	}
	re, err := regexp.Compile(rc.Match)
	if err != nil {
		return nil, fmt.Errorf("regex: compile match %q: %w", rc.Match, err)
	}
	if err := checkTemplate(re, rc.Replace); err != nil {
		return nil, fmt.Errorf("regex: replace %q: %w", rc.Replace, err)
	}
	return re, nil
}

// checkTemplate walks the template the way regexp.Expand reads it and fails on references to
// groups that do not exist: Expand silently turns them into nothing, and "$1x" (read as the group
// named "1x") is a classic mistake for "${1}x". Literal text must be valid in a path.
func checkTemplate(re *regexp.Regexp, t string) error {
	if t == "" {
		return fmt.Errorf("empty (write / to rewrite to the root)")
	}
	names := map[string]bool{}
	for _, n := range re.SubexpNames() {
		if n != "" {
			names[n] = true
		}
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '$' {
			if badPathRune(rune(c)) {
				return fmt.Errorf("byte %q is not allowed in a path (percent-encode it)", c)
			}
			continue
		}
		if i+1 < len(t) && t[i+1] == '$' {
			i++
			continue
		}
		name, n, ok := templateRef(t[i+1:])
		if !ok {
			return fmt.Errorf("lone $ at offset %d (write $$ for a dollar sign)", i)
		}
		i += n
		if isDigits(name) {
			var num int
			for _, d := range name {
				num = num*10 + int(d-'0')
				if num > re.NumSubexp() {
					break
				}
			}
			if num > re.NumSubexp() {
				return fmt.Errorf("$%s: the expression has %d capture groups", name, re.NumSubexp())
			}
			continue
		}
		if !names[name] {
			if d := leadingDigits(name); d != "" {
				return fmt.Errorf("$%s refers to a group named %q; write ${%s}%s", name, name, d, name[len(d):])
			}
			return fmt.Errorf("$%s: no capture group named %q", name, name)
		}
	}
	return nil
}

// templateRef reads the name after a '$': "{name}" or the longest run of letters, digits and
// underscores. n is how many bytes it used.
func templateRef(s string) (name string, n int, ok bool) {
	if s != "" && s[0] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 2 || !isWord(s[1:end]) {
			return "", 0, false
		}
		return s[1:end], end + 1, true
	}
	for n < len(s) && isWordByte(s[n]) {
		n++
	}
	if n == 0 {
		return "", 0, false
	}
	return s[:n], n, true
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
