package engine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestLifeOfARequestNamesRealFunctions keeps README.md's walk through a request true: every
// `pkg.Func` or `pkg.Type.Method` it names must exist in that package.
func TestLifeOfARequestNamesRealFunctions(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "## Life of a request")
	if start < 0 {
		t.Fatal("README.md has no Life of a request section")
	}
	section := text[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}

	// Every declared function and method, and every type, by package name.
	decls := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range []string{"core", "plugins"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			pkg := f.Name.Name
			for _, d := range f.Decls {
				switch d := d.(type) {
				case *ast.FuncDecl:
					if d.Recv == nil {
						decls[pkg+"."+d.Name.Name] = true
						continue
					}
					recv := d.Recv.List[0].Type
					if s, ok := recv.(*ast.StarExpr); ok {
						recv = s.X
					}
					if id, ok := recv.(*ast.Ident); ok {
						decls[pkg+"."+id.Name+"."+d.Name.Name] = true
					}
				case *ast.GenDecl:
					for _, s := range d.Specs {
						if ts, ok := s.(*ast.TypeSpec); ok {
							decls[pkg+"."+ts.Name.Name] = true
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	named := regexp.MustCompile("`((?:engine|edge|httpsyntax|router|filter|wasmhost|proxy|telemetry)\\.[A-Za-z.]+)`")
	found := 0
	for _, m := range named.FindAllStringSubmatch(section, -1) {
		found++
		if !decls[m[1]] {
			t.Errorf("README.md's Life of a request names %s, which does not exist", m[1])
		}
	}
	if found < 20 {
		t.Errorf("the walk names %d functions; expected the whole path", found)
	}
}
