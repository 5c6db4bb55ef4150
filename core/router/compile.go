package router

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Compile validates routes and builds the table; a route's id is its index in routes. It
// reports every problem at once, joined with errors.Join, each naming its route.
func Compile(routes []Route) (*Table, error) {
	t := &Table{routes: make([]route, len(routes))}
	t.allow = append(t.allow, defaultAllow...)
	var errs []error
	for i := range routes {
		errs = t.add(int32(i), &routes[i], errs)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Methods are tried for Allow in the order of defaultAllow, then the other methods routes list,
	// sorted, so the field reads the same on every reload of the same routes.
	slices.Sort(t.allow[len(defaultAllow):])
	sortGroup := func(g *group) {
		for _, ids := range g.exact {
			t.sortIDs(ids)
		}
		if g.params != nil {
			t.sortPNode(g.params)
		}
		if g.prefix != nil {
			t.sortRNode(g.prefix)
		}
		t.sortIDs(g.regex)
		t.sortIDs(g.bare)
	}
	for _, g := range t.exactHosts {
		sortGroup(g)
	}
	for _, g := range t.wildHosts {
		sortGroup(g)
	}
	if t.anyHost != nil {
		sortGroup(t.anyHost)
	}
	if r := t.raw; r != nil {
		for _, g := range r.exactHosts {
			sortGroup(g)
		}
		for _, g := range r.wildHosts {
			sortGroup(g)
		}
		if r.anyHost != nil {
			sortGroup(r.anyHost)
		}
	}
	return t, nil
}

// add compiles one route into the table and returns errs with its problems appended.
func (t *Table) add(id int32, in *Route, errs []error) []error {
	label := fmt.Sprintf("#%d", id)
	if in.Name != "" {
		label = fmt.Sprintf("%q", in.Name)
	}
	nerrs := len(errs)
	fail := func(err error) { errs = append(errs, fmt.Errorf("route %s: %w", label, err)) }

	r := &t.routes[id]
	dst := t // the table whose groups hold this route
	if in.Raw {
		if t.raw == nil {
			t.raw = &Table{routes: t.routes}
		}
		dst = t.raw
	}

	wild, hostKey, err := parseHost(in.Host)
	if err != nil {
		fail(fmt.Errorf("invalid host %q: %w", in.Host, err))
	}

	set := 0
	for _, p := range []string{in.Path, in.PathPrefix, in.PathRegex} {
		if p != "" {
			set++
		}
	}
	if set > 1 {
		fail(errors.New("at most one of path, path_prefix and path_regex may be set"))
	}

	var exact bool
	path, prefix := in.Path, in.PathPrefix
	if path != "" {
		segs, params, err := parsePath(path)
		if err == nil && !in.Raw {
			// Requests are matched in normal form, so the route's literals are put in it too.
			path, err = normalPattern(segs)
			if params {
				segs, _, _ = parsePath(path)
			}
		}
		switch {
		case err != nil:
			fail(fmt.Errorf("invalid path %q: %w", in.Path, err))
		case params:
			r.segs = segs
		default:
			exact = true
		}
	}
	if prefix != "" {
		err := checkPrefix(prefix)
		if err == nil && !in.Raw {
			var b []byte
			b, err = NormalizePath(nil, []byte(prefix))
			prefix = string(b)
		}
		if err != nil {
			fail(fmt.Errorf("invalid path_prefix %q: %w", in.PathPrefix, err))
		}
	}
	if in.PathRegex != "" {
		// Compile the pattern as written first so that errors quote the user's text, not the
		// anchored wrapper.
		if re, err := regexp.Compile(in.PathRegex); err != nil {
			fail(fmt.Errorf("invalid path_regex %q: %w", in.PathRegex, err))
		} else {
			r.re = regexp.MustCompile(`^(?:` + in.PathRegex + `)$`)
			// Every match of the unanchored pattern starts with its literal prefix, so a whole
			// path that lacks it cannot match.
			r.reLit, _ = re.LiteralPrefix()
		}
	}

	for _, m := range in.Methods {
		if !httpsyntax.IsToken(m) {
			fail(fmt.Errorf("invalid method %q: not an HTTP token", m))
			continue
		}
		m = strings.ToUpper(m)
		dup := false
		for _, have := range r.methods {
			dup = dup || have == m
		}
		if !dup {
			r.methods = append(r.methods, m)
		}
	}
	for _, h := range in.Headers {
		switch {
		case !httpsyntax.IsToken(h.Name):
			fail(fmt.Errorf("invalid header name %q: not an HTTP token", h.Name))
		case h.Value == "":
			fail(fmt.Errorf("header %q: empty value (use \"*\" to require presence)", h.Name))
		default:
			r.headers = append(r.headers, headerMatch{
				name: canonicalHeader(h.Name), value: h.Value, present: h.Value == "*",
			})
		}
	}
	r.weight = len(r.headers)
	if len(r.methods) > 0 {
		r.weight++
	}
	r.trace = in.AllowTrace || slices.Contains(r.methods, "TRACE")
	for _, m := range r.methods {
		if !slices.Contains(t.allow, m) {
			t.allow = append(t.allow, m)
		}
	}
	if r.trace && !slices.Contains(t.allow, "TRACE") {
		t.allow = append(t.allow, "TRACE")
	}

	if len(errs) > nerrs {
		return errs
	}

	switch {
	case wild:
		r.rank.host, r.rank.hostLen = 1, len(hostKey)
	case hostKey == "":
		r.rank.host = 2
	}
	g := dst.group(wild, hostKey)
	switch {
	case exact:
		if g.exact == nil {
			g.exact = map[string][]int32{}
		}
		g.exact[path] = append(g.exact[path], id)
	case r.segs != nil:
		if g.params == nil {
			g.params = &pnode{}
		}
		g.params.insert(r.segs, id)
		r.rank.kind = 1
		catchAll := 0
		for _, s := range r.segs {
			if s.kind == segLiteral {
				r.rank.within += 2
			} else if s.kind == segCatchAll {
				catchAll = 1
			}
		}
		r.rank.within += 1 - catchAll
	case prefix != "":
		if g.prefix == nil {
			g.prefix = &rnode{}
		}
		g.prefix.insert(prefix, id)
		r.rank.kind, r.rank.within = 2, len(prefix)
	case r.re != nil:
		g.regex = append(g.regex, id)
		r.rank.kind = 3
	default:
		g.bare = append(g.bare, id)
		r.rank.kind = 4
	}
	return errs
}

// normalPattern writes a parsed path pattern with its literal segments in normal form (see
// NormalizePath). A dot segment, or an empty one anywhere but at the end, is an error: no
// request path in normal form has one, so the route could never match.
func normalPattern(segs []segment) (string, error) {
	var b []byte
	for i, s := range segs {
		b = append(b, '/')
		switch s.kind {
		case segParam:
			b = append(b, '{')
			b = append(b, s.text...)
			b = append(b, '}')
			continue
		case segCatchAll:
			b = append(b, '{')
			b = append(b, s.text...)
			b = append(b, "...}"...)
			continue
		}
		if s.text == "" && i == len(segs)-1 {
			continue
		}
		n, err := NormalizePath(nil, []byte("/"+s.text))
		if err != nil {
			return "", err
		}
		if len(n) < 2 {
			return "", fmt.Errorf("segment %q: empty and dot segments never match a normalised path (a raw route can match it)", s.text)
		}
		b = append(b, n[1:]...)
	}
	return string(b), nil
}

// group returns the group for a host key, creating it.
func (t *Table) group(wild bool, key string) *group {
	var m *map[string]*group
	switch {
	case key == "":
		if t.anyHost == nil {
			t.anyHost = &group{}
		}
		return t.anyHost
	case wild:
		m = &t.wildHosts
		if len(t.wildHosts) == 0 || len(key) < t.minWild {
			t.minWild = len(key)
		}
		t.maxWild = max(t.maxWild, len(key))
	default:
		m = &t.exactHosts
	}
	if *m == nil {
		*m = map[string]*group{}
	}
	g := (*m)[key]
	if g == nil {
		g = &group{}
		(*m)[key] = g
	}
	return g
}

// parseHost returns the lookup key of a host pattern: "" for any host, the lower-cased host, or
// for a wildcard the suffix after "*.".
func parseHost(p string) (wild bool, key string, err error) {
	p = strings.ToLower(p)
	if p == "" || p == "*" {
		return false, "", nil
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		wild, p = true, rest
	}
	// A fully qualified name's trailing dot names the same host; Match drops it as well.
	p = strings.TrimSuffix(p, ".")
	switch {
	case p == "" && wild:
		return false, "", errors.New("wildcard without a domain")
	case p == "":
		return false, "", errors.New("empty label")
	case strings.Contains(p, "*"):
		return false, "", errors.New(`"*" is allowed only as the whole first label, as in "*.example.com"`)
	case len(p) > 253:
		return false, "", fmt.Errorf("%d bytes, at most 253", len(p))
	case p[0] == '[':
		if wild {
			return false, "", errors.New("a wildcard cannot precede an IP literal")
		}
		inner, ok := strings.CutSuffix(p[1:], "]")
		if !ok || inner == "" || strings.Trim(inner, "0123456789abcdef:.") != "" {
			return false, "", errors.New("malformed IPv6 literal")
		}
		return false, p, nil
	case strings.Contains(p, ":"):
		return false, "", errors.New("must not carry a port")
	}
	for _, label := range strings.Split(p, ".") {
		if label == "" {
			return false, "", errors.New("empty label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false, "", fmt.Errorf("invalid character %q", c)
			}
		}
	}
	return wild, p, nil
}

// parsePath splits a path pattern into segments and reports whether it has parameters.
func parsePath(p string) (segs []segment, params bool, err error) {
	if !strings.HasPrefix(p, "/") {
		return nil, false, errors.New(`must start with "/"`)
	}
	parts := strings.Split(p[1:], "/")
	seen := map[string]bool{}
	for i, part := range parts {
		if !strings.ContainsAny(part, "{}") {
			segs = append(segs, segment{kind: segLiteral, text: part})
			continue
		}
		name, ok := strings.CutPrefix(part, "{")
		if ok {
			name, ok = strings.CutSuffix(name, "}")
		}
		if !ok || strings.ContainsAny(name, "{}") {
			return nil, false, fmt.Errorf("segment %q: a parameter must be a whole segment, {name} or {name...}", part)
		}
		kind := segParam
		if n, ok := strings.CutSuffix(name, "..."); ok {
			if i != len(parts)-1 {
				return nil, false, fmt.Errorf("segment %q: {name...} must be the last segment", part)
			}
			name, kind = n, segCatchAll
		}
		if !isIdent(name) {
			return nil, false, fmt.Errorf("segment %q: a parameter name is a letter or _ followed by letters, digits or _", part)
		}
		if seen[name] {
			return nil, false, fmt.Errorf("duplicate parameter %q", name)
		}
		seen[name] = true
		segs = append(segs, segment{kind: kind, text: name})
	}
	if len(seen) > filter.MaxParams {
		return nil, false, fmt.Errorf("%d parameters, at most %d", len(seen), filter.MaxParams)
	}
	return segs, len(seen) > 0, nil
}

func checkPrefix(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New(`must start with "/"`)
	}
	if strings.ContainsAny(p, "{}") {
		// Braces are not valid unescaped in a URL path, so they can only be a mistaken attempt
		// at parameters.
		return errors.New("a prefix cannot hold parameters; use path with a final {name...}")
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// canonicalHeader writes a header name in the form fasthttp normalizes names to ("x-api-key"
// becomes "X-Api-Key"). Peek normalizes its key anyway; the canonical form also finds
// canonically written headers on a server that disables normalizing.
func canonicalHeader(s string) string {
	b := []byte(strings.ToLower(s))
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
		upper = c == '-'
	}
	return string(b)
}
