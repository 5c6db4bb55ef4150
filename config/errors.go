package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error is one problem in a config, located as precisely as the config allows. Load, Parse and
// Validate return errors.Join of *Error values, one per problem, so that `weir validate` can
// print every problem on its own line.
type Error struct {
	// File is the config file ("" for a config built in code).
	File string
	// Line is the 1-based line in File where the offending key or item starts; 0 when unknown
	// (the value came from an environment variable, or the config was built in code).
	Line int
	// Path is the key path as written in YAML: "server.listen", "routes[2].filters[1]".
	Path string
	// Route and Filter name the route and filter the problem is in, when it is in one.
	Route  string
	Filter string
	Err    error

	// lineAt, when set, is the key path whose line locates the problem better than Path (an
	// unknown key is reported on its mapping's path but sits on its own line).
	lineAt string
}

// Error formats as
//
//	config/weir.yaml:14: routes[2].filters[1] (route "api", filter "headers"): unknown filter
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
	}
	var ctx []string
	if e.Route != "" {
		ctx = append(ctx, "route "+strconv.Quote(e.Route))
	}
	if e.Filter != "" {
		ctx = append(ctx, "filter "+strconv.Quote(e.Filter))
	}
	if len(ctx) > 0 {
		if e.Path != "" {
			b.WriteByte(' ')
		}
		b.WriteString("(" + strings.Join(ctx, ", ") + ")")
	}
	if e.Path != "" || len(ctx) > 0 {
		b.WriteString(": ")
	}
	if e.Err != nil {
		// Messages may quote config values; whatever looks like a credential is hidden here, the
		// one place every config error is formatted (validate output, reload history, logs).
		b.WriteString(RedactText(e.Err.Error()))
	} else {
		b.WriteString("invalid")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors flattens an error returned by Load, Parse, Validate or DecodeStrict into its *Error
// values, in order. An error that is not an *Error is returned as one with only Err set.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		var ce *Error
		if errors.As(e, &ce) && ce == e {
			out = append(out, ce)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(e, &ce) {
			out = append(out, ce)
			return
		}
		out = append(out, &Error{Err: e})
	}
	walk(err)
	return out
}

// problems collects *Error values for one file, filling in the file and line of each.
type problems struct {
	file  string
	lines map[string]int
	envOf func(path string) bool
	errs  []error
}

// add records a problem at path; route and filter may be empty.
func (p *problems) add(path, route, filter string, err error) {
	p.addAt(path, path, route, filter, err)
}

// addAt is add with the line taken from lineAt rather than path.
func (p *problems) addAt(path, lineAt, route, filter string, err error) {
	e := &Error{File: p.file, Path: path, Route: route, Filter: filter, Err: err}
	if p.file != "" && p.envOf != nil && p.envOf(path) {
		// The value did not come from the file, so no line; say where it came from instead.
		e.Err = fmt.Errorf("%w (from $%s)", err, EnvVar(path))
	} else {
		e.Line = lineFor(p.lines, lineAt)
	}
	p.errs = append(p.errs, e)
}

// addAll records every error inside err (as produced by decodeInto), adding route and filter
// context.
func (p *problems) addAll(err error, route, filter string) {
	for _, e := range Errors(err) {
		at := e.lineAt
		if at == "" {
			at = e.Path
		}
		p.addAt(e.Path, at, route, filter, e.Err)
	}
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// lineFor finds the line of path, or of its nearest ancestor that has one. Keys are tried as
// written and then lowercased, because the server and access_log sections go through viper,
// which lowercases them.
func lineFor(lines map[string]int, path string) int {
	if lines == nil {
		return 0
	}
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		if l, ok := lines[strings.ToLower(path)]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			break
		}
		path = path[:i]
	}
	return lines[path]
}

// Line returns the line in c.File where the key at path ("routes[2].filters[1]") starts, or the
// line of its nearest enclosing key; 0 when unknown.
func (c *Config) Line(path string) int {
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}
