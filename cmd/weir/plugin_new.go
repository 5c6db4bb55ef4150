package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/weir-gateway/weir/sdk"
)

// projectName is what weir plugin new accepts: it becomes a directory, a Go module, a Rust crate
// (with '-' turned into '_'), an npm package and the plugin's name in weir.yaml.
var projectName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// cmdPluginNew writes a plugin project that builds offline: the SDK sources it needs are copied
// in from this binary, never fetched.
func cmdPluginNew(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weir plugin new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lang := fs.String("lang", langGo, "go, c, rust or assemblyscript")
	dir := fs.String("dir", "", "where to write the project (default ./NAME)")
	args = flagsFirst(args)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	name := fs.Arg(0)
	if !projectName.MatchString(name) {
		fmt.Fprintf(stderr, "weir plugin new: %q: a plugin name is lower-case letters, digits and '-', starting with a letter\n", name)
		return 2
	}
	if *dir == "" {
		*dir = name
	}
	files, err := projectFiles(name, *lang)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin new: %v\n", err)
		return 2
	}
	if ents, err := os.ReadDir(*dir); err == nil && len(ents) > 0 {
		fmt.Fprintf(stderr, "weir plugin new: %s exists and is not empty; choose another name or -dir\n", *dir)
		return 1
	}
	if err := writeFiles(*dir, files); err != nil {
		fmt.Fprintf(stderr, "weir plugin new: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: a Weir plugin in %s, with the SDK copied in (no network needed to build it", *dir, langNames[*lang])
	if *lang == langAS {
		fmt.Fprintf(stdout, " once npm has installed the compiler).\nNext:\n  (cd %s && npm ci)    # the AssemblyScript compiler, pinned in package-lock.json\n", *dir)
	} else {
		fmt.Fprintf(stdout, ").\nNext:\n")
	}
	fmt.Fprintf(stdout, "  weir plugin build %s\n  weir run -c %s\n  curl -i http://127.0.0.1:8080/\n", *dir, filepath.Join(*dir, "weir.yaml"))
	return 0
}

var langNames = map[string]string{langGo: "Go", langC: "C", langRust: "Rust", langAS: "AssemblyScript"}

// cmdPluginSDK copies the SDK sources for a language into DIR, for a project started without
// weir plugin new (or to update the copy after upgrading weir).
func cmdPluginSDK(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	files, err := sdk.Files(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin sdk: %v\n", err)
		return 2
	}
	if err := writeFiles(args[1], files); err != nil {
		fmt.Fprintf(stderr, "weir plugin sdk: %v\n", err)
		return 1
	}
	for _, n := range sortedNames(files) {
		fmt.Fprintln(stdout, filepath.Join(args[1], n))
	}
	if args[0] == langGo {
		fmt.Fprintf(stdout, "then, in your module: go mod edit -require=%s@v0.0.0 -replace=%s=./weirsdk\n", sdk.GoModule, sdk.GoModule)
	}
	return 0
}

// flagsFirst moves flags after the positional argument in front of it, so that both
// `new NAME --lang c` and `new --lang c NAME` work.
func flagsFirst(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func writeFiles(dir string, files map[string][]byte) error {
	for _, n := range sortedNames(files) {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}

func sortedNames(m map[string][]byte) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// projectFiles is a new project: the plugin source, the SDK copy, a weir.yaml that runs the
// plugin in front of the built-in echo upstream, and a .gitignore.
func projectFiles(name, lang string) (map[string][]byte, error) {
	files, err := sdk.Files(lang)
	if err != nil {
		return nil, err
	}
	fill := func(s string) []byte {
		return []byte(strings.NewReplacer("{{NAME}}", name, "{{CRATE}}", strings.ReplaceAll(name, "-", "_"),
			"{{LANG}}", lang, "{{SDK}}", sdk.GoModule).Replace(s))
	}
	switch lang {
	case langGo:
		files["go.mod"] = fill(goModTemplate)
		files["main.go"] = fill(goTemplate)
	case langC:
		files["plugin.c"] = fill(cTemplate)
	case langRust:
		files["src/lib.rs"] = fill(rustTemplate)
	case langAS:
		files["assembly/index.ts"] = fill(asTemplate)
		files["package.json"] = fill(asPackageTemplate)
		lock, err := renameLock(sdk.PackageLock(), name)
		if err != nil {
			return nil, err
		}
		files["package-lock.json"] = lock
	}
	files["weir.yaml"] = fill(configTemplate)
	files[".gitignore"] = fill("/{{NAME}}.wasm\n/node_modules/\n")
	return files, nil
}

// renameLock is the SDK's package-lock.json for a package called name: the same pinned, hashed
// compiler, so `npm ci` installs exactly what the SDK is tested with.
func renameLock(lock []byte, name string) ([]byte, error) {
	var l map[string]any
	if err := json.Unmarshal(lock, &l); err != nil {
		return nil, fmt.Errorf("the embedded package-lock.json: %w", err)
	}
	l["name"] = name
	l["version"] = "0.1.0"
	if pk, ok := l["packages"].(map[string]any); ok {
		if root, ok := pk[""].(map[string]any); ok {
			root["name"] = name
			root["version"] = "0.1.0"
			delete(root, "license")
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

const configTemplate = `# Runs the plugin in front of Weir's built-in echo upstream, which answers with a JSON
# description of the request it got:  weir run -c weir.yaml, then curl -i http://127.0.0.1:8080/
server: { listen: "127.0.0.1:8080", admin: "127.0.0.1:9901" }
upstreams:
  echo: { kind: echo }
plugins:
  {{NAME}}:
    file: {{NAME}}.wasm        # relative to this file; weir plugin build writes it here
    timeout: 100ms
    memory_mb: 16
    config: { greeting: hello }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: echo
    filters:
      - {{NAME}}: {}
`

const goModTemplate = `module {{NAME}}

go 1.24

require {{SDK}} v0.0.0

// The Weir SDK is not published to the Go module proxy; weir plugin new copied it into
// ./weirsdk (weir plugin sdk go weirsdk refreshes the copy).
replace {{SDK}} => ./weirsdk
`

const goTemplate = `// Command {{NAME}} is a Weir plugin (http-wasm). It tags every request with "X-Hello" (its
// config's greeting) on the way upstream, and every response with "X-Plugin: {{NAME}}".
//
// Build: weir plugin build .   (or GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o {{NAME}}.wasm .)
package main

import (
	"encoding/json"

	weir "{{SDK}}"
)

type plugin struct{ greeting string }

func (p *plugin) HandleRequest(req weir.Request, _ weir.Response) (next bool, reqCtx uint32) {
	req.Header().Set("X-Hello", p.greeting)
	return true, 0
}

func (p *plugin) HandleResponse(_ uint32, _ weir.Request, resp weir.Response, isError bool) {
	if !isError {
		resp.Header().Set("X-Plugin", "{{NAME}}")
	}
}

// init runs once per instance, when the host starts it.
func init() {
	var cfg struct {
		Greeting string ` + "`json:\"greeting\"`" + `
	}
	_ = json.Unmarshal(weir.Config(), &cfg)
	if cfg.Greeting == "" {
		cfg.Greeting = "world"
	}
	// Changing the response in HandleResponse needs buffer_response.
	weir.EnableFeatures(weir.BufferResponse)
	weir.Handle(&plugin{greeting: cfg.Greeting})
}

func main() {}
`

const cTemplate = `// {{NAME}}: a Weir plugin (http-wasm). It tags every request with "X-Hello: world" on the way
// upstream, and every response with "X-Plugin: {{NAME}}".
//
// Build: weir plugin build .
//   (or clang --target=wasm32-wasi -mexec-model=reactor -O2 -o {{NAME}}.wasm plugin.c)
#include "weir.h"

WEIR_INIT static void init(void) {
	// Changing the response in handle_response needs buffer_response.
	weir_enable_features(WEIR_FEATURE_BUFFER_RESPONSE);
}

WEIR_EXPORT("handle_request") int64_t handle_request(void) {
	weir_set_header_value(WEIR_HEADER_REQUEST, WEIR_LIT("X-Hello"), WEIR_LIT("world"));
	return weir_next(0);
}

WEIR_EXPORT("handle_response") void handle_response(uint32_t req_ctx, uint32_t is_error) {
	(void)req_ctx;
	if (is_error) return;
	weir_set_header_value(WEIR_HEADER_RESPONSE, WEIR_LIT("X-Plugin"), WEIR_LIT("{{NAME}}"));
}
`

const rustTemplate = `//! {{NAME}}: a Weir plugin (http-wasm). It tags every request with "X-Hello: world" on the way
//! upstream, and every response with "X-Plugin: {{NAME}}".
//!
//! Build: weir plugin build .   (rustc alone: it compiles weir/lib.rs, the SDK crate, first)

struct Plugin;

impl weir::Handler for Plugin {
    fn init(&self) {
        // Changing the response in handle_response needs buffer_response.
        weir::enable_features(weir::FEATURE_BUFFER_RESPONSE);
    }

    fn handle_request(&self, req: &weir::Request, _resp: &weir::Response) -> weir::Next {
        req.headers().set("X-Hello", "world");
        weir::Next::Continue(0)
    }

    fn handle_response(&self, _ctx: u32, _req: &weir::Request, resp: &weir::Response, is_error: bool) {
        if !is_error {
            resp.headers().set("X-Plugin", "{{NAME}}");
        }
    }
}

weir::handler!(Plugin);
`

const asTemplate = `// {{NAME}}: a Weir plugin (http-wasm). It tags every request with "X-Hello: world" on the way
// upstream, and every response with "X-Plugin: {{NAME}}".
//
// Build: npm ci (once), then weir plugin build .
import { Feature, Handler, Request, Response, enable_features, handle, next } from "./weir";
export { handle_request, handle_response } from "./weir";

class Plugin extends Handler {
  handleRequest(req: Request, resp: Response): u64 {
    req.headers.set("X-Hello", "world");
    return next();
  }

  handleResponse(reqCtx: u32, req: Request, resp: Response, isError: bool): void {
    if (!isError) resp.headers.set("X-Plugin", "{{NAME}}");
  }
}

// Top-level code runs once per instance (the build exports it as _initialize).
enable_features(Feature.BufferResponse); // changing the response needs buffer_response
handle(new Plugin());
`

const asPackageTemplate = `{
  "name": "{{NAME}}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {
    "build": "weir plugin build ."
  },
  "devDependencies": {
    "assemblyscript": "` + sdk.AssemblyScriptVersion + `"
  }
}
`
