package filter

import (
	"bufio"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forbidden says why a package in dir (a slash path from the module root) may not import imp
// (the same, for an import from this module), or "" when it may. This is the dependency rule
// of the design guide: arrows only point down to core/filter, and components meet only
// through its registries.
//
// Test files are not held to it: an engine test runs a real plugin end to end, and a filter's
// README example may use another filter. What ships is what the rule is about.
func forbidden(dir, imp string) string {
	top := func(p string) string { return strings.SplitN(p, "/", 2)[0] }
	under := func(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
	if under(imp, "core/testkit") && !under(dir, "core/testkit") {
		return "core/testkit is for tests only; it must never be linked into the gateway"
	}
	if under(imp, "core/telemetry/promtest") && !under(dir, "core/telemetry/promtest") {
		return "core/telemetry/promtest is for tests only; it must never be linked into the gateway"
	}
	switch {
	case under(dir, "core/httpsyntax"):
		return "core/httpsyntax imports only the standard library, so that config may use it"
	case under(dir, "core"):
		if t := top(imp); t == "filters" || t == "plugins" || t == "cmd" {
			return "core knows filters and plugins only through the registries in core/filter"
		}
	case under(dir, "config"):
		// core/httpsyntax imports only the standard library: config still reads alone.
		if t := top(imp); t != "config" && imp != "core/httpsyntax" {
			return "config imports nothing from core (but core/httpsyntax), filters, plugins or cmd"
		}
	case under(dir, "filters") && !under(dir, "filters/all"):
		self := strings.SplitN(dir, "/", 3)
		switch {
		case under(imp, "filters/internal"):
		case under(imp, "filters") && (len(self) < 2 || !under(imp, "filters/"+self[1])):
			return "filters never import each other"
		case under(imp, "core/engine"), under(imp, "core/admin"):
			return "filters never import the engine"
		case top(imp) == "plugins", top(imp) == "cmd":
			return "filters never import the plugin host"
		}
	case under(dir, "plugins"):
		switch {
		case top(imp) == "filters", top(imp) == "cmd":
			return "plugins never import filters"
		case under(imp, "core/engine"), under(imp, "core/admin"):
			return "plugins reach the engine only through core/filter"
		case under(imp, "core/proxy"):
			return "plugins reach upstreams only through core/filter (Env.Upstreams)"
		}
	}
	return ""
}

func TestForbidden(t *testing.T) {
	tests := []struct {
		dir, imp string
		allowed  bool
	}{
		{"core/engine", "core/filter", true},
		{"core/engine", "plugins/wasmhost", false},
		{"core/admin", "plugins/wasmhost", false},
		{"core/engine", "filters/all", false},
		{"core/filter", "filters/jwt", false},
		{"config", "core/filter", false},
		{"config", "config/internal", true},
		{"config", "core/httpsyntax", true},
		{"config", "core/router", false},
		{"core/httpsyntax", "core/filter", false},
		{"filters/jwt", "core/filter", true},
		{"filters/jwt", "core/telemetry", true},
		{"filters/jwt", "filters/internal/filtertest", true},
		{"filters/jwt", "filters/jwt/keys", true},
		{"filters/jwt", "filters/headers", false},
		{"filters/jwt", "filters/jwtx", false},
		{"filters/jwt", "core/engine", false},
		{"filters/jwt", "plugins/wasmhost", false},
		{"filters/all", "filters/jwt", true},
		{"plugins/wasmhost", "core/filter", true},
		{"plugins/wasmhost", "config", true},
		{"plugins/wasmhost", "plugins/httpwasm", true},
		{"plugins/wasmhost", "core/engine", false},
		{"plugins/wasmhost", "filters/jwt", false},
		{"core/engine", "plugins/proxywasm", false},
		{"core/admin", "plugins/proxywasm", false},
		{"plugins/proxywasm", "core/filter", true},
		{"plugins/proxywasm", "plugins/wasmhost", true},
		{"plugins/proxywasm", "core/engine", false},
		{"plugins/proxywasm", "core/admin", false},
		{"plugins/proxywasm", "core/proxy", false},
		{"plugins/proxywasm", "filters/jwt", false},
		{"cmd/weir", "plugins/wasmhost", true},
		{"core/engine", "core/testkit", false},
		{"plugins/wasmhost", "core/testkit", false},
		{"plugins/wasmhost/wasmtest", "core/testkit", false},
		{"core/testkit", "core/testkit/x", true},
		{"core/engine", "core/telemetry/promtest", false},
		{"filters/ratelimit", "core/telemetry/promtest", false},
	}
	for _, tt := range tests {
		if got := forbidden(tt.dir, tt.imp) == ""; got != tt.allowed {
			t.Errorf("%s imports %s: allowed = %t, want %t (%s)", tt.dir, tt.imp, got, tt.allowed, forbidden(tt.dir, tt.imp))
		}
	}
}

// TestDependencyRule checks every non-test Go file of the module against forbidden, whatever
// its build tags.
func TestDependencyRule(t *testing.T) {
	root, module := moduleRoot(t)
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if file != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(file, "go.mod")); err == nil && file != root {
				return filepath.SkipDir // another module (an SDK, a tool)
			}
			return nil
		}
		if !strings.HasSuffix(file, ".go") || strings.HasSuffix(file, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, file, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, file)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		dir := path.Dir(rel)
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			local, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if why := forbidden(dir, local); why != "" {
				t.Errorf("%s imports %s: %s", rel, imp, why)
			}
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files under %s", checked, root)
	}
}

// moduleRoot returns the directory of the go.mod above the working directory and its module
// path.
func moduleRoot(t *testing.T) (string, string) {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			defer f.Close()
			s := bufio.NewScanner(f)
			for s.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
					return dir, strings.TrimSpace(m)
				}
			}
			t.Fatalf("%s/go.mod names no module", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
