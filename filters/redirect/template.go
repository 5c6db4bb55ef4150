package redirect

import (
	"errors"
	"fmt"
	"strings"
)

// varKind is what a {name} in a template stands for.
type varKind uint8

const (
	literal   varKind = iota
	vHost             // the Host field, port included
	vHostname         // the Host field without its port
	vPath             // the request path, as the upstream would receive it
	vQuery            // the query string, without "?"
	vScheme           // http or https
	vParam            // a path parameter the route captured
)

// part is a piece of a compiled template: literal bytes or a variable.
type part struct {
	kind varKind
	lit  []byte // literal bytes
	name string // the parameter name, for vParam
}

// template is a redirect target compiled at config build.
type template struct {
	parts    []part
	relative bool // a path on the same host ("/new{path}")
	queryVar bool // {query} appears: the template places the query itself
	qmark    bool // a literal "?": a kept query is joined with "&"
}

var builtins = map[string]varKind{
	"host": vHost, "hostname": vHostname, "path": vPath, "query": vQuery, "scheme": vScheme,
}

// parseTemplate compiles s. It refuses any template whose destination host a client could
// choose: the host part may hold literals, {host} and {hostname} only, the path must start
// right after it, and a relative target must not start with "//" (a protocol-relative URL
// names another host).
func parseTemplate(s string) (*template, error) {
	t := &template{}
	rest := s
	for len(rest) > 0 {
		i := strings.IndexByte(rest, '{')
		if j := strings.IndexByte(rest, '}'); j >= 0 && (i < 0 || j < i) {
			return nil, fmt.Errorf("to %q: unmatched '}'", s)
		}
		if i < 0 {
			i = len(rest)
		}
		if i > 0 {
			lit := rest[:i]
			for k := 0; k < len(lit); k++ {
				if c := lit[k]; c <= ' ' || c >= 0x7f || c == '#' || c == '\\' {
					return nil, fmt.Errorf("to %q: byte %q is not allowed in a URL (escape it as %%%02X)", s, c, c)
				}
			}
			t.parts = append(t.parts, part{kind: literal, lit: []byte(lit)})
			if strings.IndexByte(lit, '?') >= 0 {
				t.qmark = true
			}
			rest = rest[i:]
			continue
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return nil, fmt.Errorf("to %q: unterminated '{'", s)
		}
		name := rest[1:end]
		rest = rest[end+1:]
		if k, ok := builtins[name]; ok {
			t.parts = append(t.parts, part{kind: k})
			if k == vQuery {
				t.queryVar = true
			}
			continue
		}
		if !isIdent(name) {
			return nil, fmt.Errorf("to %q: {%s} is neither host, hostname, path, query, scheme nor a path parameter name", s, name)
		}
		t.parts = append(t.parts, part{kind: vParam, name: name})
	}
	if len(t.parts) == 0 {
		return nil, errors.New("to is empty")
	}
	return t, t.checkShape(s)
}

func (t *template) checkShape(s string) error {
	first := t.parts[0]
	if first.kind == vPath {
		t.relative = true // {path} starts with "/"
		return nil
	}
	if first.kind == literal && first.lit[0] == '/' {
		if len(first.lit) > 1 && first.lit[1] == '/' {
			return fmt.Errorf("to %q: starts with \"//\", which names another host; write https://host/... or a path", s)
		}
		t.relative = true
		return nil
	}
	// An absolute URL: a scheme, "://", then the authority.
	var after []part
	switch {
	case first.kind == literal && hasPrefixFold(string(first.lit), "https://"):
		after = append([]part{{kind: literal, lit: first.lit[len("https://"):]}}, t.parts[1:]...)
	case first.kind == literal && hasPrefixFold(string(first.lit), "http://"):
		after = append([]part{{kind: literal, lit: first.lit[len("http://"):]}}, t.parts[1:]...)
	case first.kind == vScheme && len(t.parts) > 1 && t.parts[1].kind == literal && strings.HasPrefix(string(t.parts[1].lit), "://"):
		after = append([]part{{kind: literal, lit: t.parts[1].lit[3:]}}, t.parts[2:]...)
	default:
		return fmt.Errorf("to %q: want an absolute http(s) URL (https://{host}{path}) or a path starting with \"/\"", s)
	}
	authority := 0 // parts that made up the host
	for _, p := range after {
		switch p.kind {
		case literal:
			lit := string(p.lit)
			if k := strings.IndexAny(lit, "/?"); k >= 0 {
				lit = lit[:k]
				if err := checkAuthorityLiteral(s, lit); err != nil {
					return err
				}
				if authority == 0 && lit == "" {
					return fmt.Errorf("to %q: no host after the scheme", s)
				}
				return nil
			}
			if err := checkAuthorityLiteral(s, lit); err != nil {
				return err
			}
			if lit != "" {
				authority++
			}
		case vHost, vHostname:
			authority++
		case vPath:
			if authority == 0 {
				return fmt.Errorf("to %q: no host after the scheme", s)
			}
			return nil // {path} always starts with "/"
		default:
			return fmt.Errorf("to %q: the host part may only hold literal text, {host} and {hostname}: "+
				"anything else would let a client choose where the redirect goes", s)
		}
	}
	if authority == 0 {
		return fmt.Errorf("to %q: no host after the scheme", s)
	}
	return nil
}

// checkAuthorityLiteral allows the bytes of a host name, an IP literal and a port.
func checkAuthorityLiteral(s, lit string) error {
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._:[]", c) >= 0) {
			return fmt.Errorf("to %q: byte %q is not allowed in the host part", s, c)
		}
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
