package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/plugins/wasmhost"
)

// watchPlugins reloads eng when one of cfg's plugin files changes: the config watch sees only
// the config file, and replacing a .wasm is how a plugin is upgraded. Plugins that a later
// reload adds are watched from the next start; SIGHUP or POST /reload covers them meanwhile.
func watchPlugins(cfg *config.Config, eng *engine.Engine, log zerolog.Logger) (stop func()) {
	var stops []func()
	seen := map[string]bool{}
	for name, pl := range cfg.Plugins {
		if pl.Path == "" || seen[pl.Path] {
			continue
		}
		seen[pl.Path] = true
		s, err := config.Watch(pl.Path, 250*time.Millisecond, func() {
			_, _ = eng.Reload("plugin file") // the engine logs and records the outcome
		})
		if err != nil {
			log.Warn().Err(err).Str("plugin", name).Msg("plugin file watch unavailable; reload with SIGHUP or the admin api")
			continue
		}
		stops = append(stops, s)
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

const pluginUsage = `usage:
  weir plugin inspect [-json] FILE.wasm   ABI, exports, imports, memory, and whether it would load
  weir plugin build [-o OUT.wasm] [-sdk DIR] DIR
                                          build the plugin in DIR with its language's toolchain:
                                          Go (go.mod or *.go), Rust (Cargo.toml, lib.rs, main.rs),
                                          AssemblyScript (asconfig.json, or package.json naming
                                          assemblyscript), C (*.c), WebAssembly text (*.wat)
`

func cmdPlugin(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	switch args[0] {
	case "inspect":
		return cmdPluginInspect(args[1:], stdout, stderr)
	case "build":
		return cmdPluginBuild(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, pluginUsage)
		return 0
	}
	fmt.Fprintf(stderr, "weir plugin: unknown command %q\n\n%s", args[0], pluginUsage)
	return 2
}

func cmdPluginInspect(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weir plugin inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	path := fs.Arg(0)
	wasm, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin inspect: %v\n", err)
		return 1
	}
	r, err := wasmhost.Inspect(wasm)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin inspect: %s: %v\n", path, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	} else {
		printReport(stdout, path, r)
	}
	if !r.Loads {
		return 1
	}
	return 0
}

func printReport(w io.Writer, path string, r *wasmhost.Report) {
	fmt.Fprintf(w, "%s\n  size     %d bytes\n  sha256   %s\n", path, r.Size, r.SHA256)
	abi := r.ABI
	switch r.ABI {
	case wasmhost.ABIProxyWasm:
		abi += " (detected; not supported yet)"
	case wasmhost.ABIUnknown:
		abi += " (exports neither handle_request/handle_response nor proxy_on_*)"
	}
	fmt.Fprintf(w, "  abi      %s\n", abi)
	switch {
	case !r.MemoryExported:
		fmt.Fprintf(w, "  memory   not exported\n")
	case r.MemoryMax > 0:
		fmt.Fprintf(w, "  memory   %d..%d pages (%s..%s)\n", r.MemoryMin, r.MemoryMax, pages(r.MemoryMin), pages(r.MemoryMax))
	default:
		fmt.Fprintf(w, "  memory   %d pages (%s) initially, no maximum (capped by memory_mb)\n", r.MemoryMin, pages(r.MemoryMin))
	}
	fmt.Fprintf(w, "  exports\n")
	for _, e := range r.Exports {
		fmt.Fprintf(w, "    %s\n", e)
	}
	fmt.Fprintf(w, "  imports\n")
	for _, i := range r.Imports {
		fmt.Fprintf(w, "    %s\n", i)
	}
	if r.Loads {
		fmt.Fprintf(w, "  loads    yes\n")
	} else {
		fmt.Fprintf(w, "  loads    no:\n")
		for _, line := range strings.Split(r.LoadError, "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}

func pages(n uint32) string {
	b := uint64(n) * 64 << 10
	if b >= 1<<20 {
		return fmt.Sprintf("%g MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", b>>10)
}

func cmdPluginBuild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weir plugin build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output file (default ./<dir name>.wasm)")
	sdk := fs.String("sdk", os.Getenv("WEIR_SDK"), "Weir's sdk directory, for C headers, the Rust crate and the AssemblyScript abort hook (default: found above DIR)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin build: %v\n", err)
		return 1
	}
	if *out == "" {
		*out = filepath.Base(dir) + ".wasm"
	}
	if *out, err = filepath.Abs(*out); err != nil {
		fmt.Fprintf(stderr, "weir plugin build: %v\n", err)
		return 1
	}
	if *sdk == "" {
		*sdk = findSDK(dir)
	}
	lang, err := detectLanguage(dir)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin build: %v\n", err)
		return 1
	}
	steps, cleanup, err := buildSteps(lang, dir, *out, *sdk)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin build: %s: %v\n", lang, err)
		return 1
	}
	for _, cmd := range steps {
		fmt.Fprintf(stderr, "+ %s\n", strings.Join(cmd.Args, " "))
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stderr, "weir plugin build: %s build failed: %v\n", lang, err)
			return 1
		}
	}
	wasm, err := os.ReadFile(*out)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin build: %v\n", err)
		return 1
	}
	r, err := wasmhost.Inspect(wasm)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin build: built %s, but it does not compile: %v\n", *out, err)
		return 1
	}
	if !r.Loads {
		fmt.Fprintf(stderr, "weir plugin build: built %s (%s), but it would not load: %s\n", *out, lang, r.LoadError)
		return 1
	}
	fmt.Fprintf(stdout, "built %s (%s, %d bytes, %s, sha256 %s)\n", *out, lang, r.Size, r.ABI, r.SHA256)
	return 0
}

// Languages weir plugin build knows.
const (
	langGo   = "go"
	langRust = "rust"
	langAS   = "assemblyscript"
	langC    = "c"
	langWAT  = "wat"
)

// detectLanguage names the language of the plugin in dir from the files it holds.
func detectLanguage(dir string) (string, error) {
	has := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	glob := func(pat string) []string { m, _ := filepath.Glob(filepath.Join(dir, pat)); return m }
	switch {
	case has("go.mod") || len(glob("*.go")) > 0:
		return langGo, nil
	case has("Cargo.toml") || has("lib.rs") || has("main.rs") || has("src/lib.rs"):
		return langRust, nil
	case has("asconfig.json") || packageNames(filepath.Join(dir, "package.json"), "assemblyscript") ||
		(len(glob("*.ts")) > 0 || has("assembly/index.ts")):
		return langAS, nil
	case len(glob("*.c")) > 0:
		return langC, nil
	case len(glob("*.wat")) > 0:
		return langWAT, nil
	}
	return "", fmt.Errorf("%s: cannot tell the language (want go.mod or *.go, Cargo.toml or lib.rs, asconfig.json or *.ts, *.c, or *.wat)", dir)
}

func packageNames(path, dep string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), `"`+dep+`"`)
}

// findSDK looks for Weir's sdk directory (it holds ABI.md) in dir and its parents.
func findSDK(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		for _, c := range []string{d, filepath.Join(d, "sdk")} {
			if _, err := os.Stat(filepath.Join(c, "ABI.md")); err == nil {
				return c
			}
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// tool finds name on PATH or returns an error saying what to install.
func tool(name, install string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH; %s", name, install)
	}
	return p, nil
}

// buildSteps returns the commands that build the plugin in dir into out.
func buildSteps(lang, dir, out, sdk string) (steps []*exec.Cmd, cleanup func(), err error) {
	cleanup = func() {}
	cmd := func(wd string, env []string, name string, args ...string) *exec.Cmd {
		c := exec.Command(name, args...)
		c.Dir = wd
		c.Env = append(os.Environ(), env...)
		return c
	}
	switch lang {
	case langGo:
		goBin, err := tool("go", "install Go 1.24 or later (stock Go builds wasip1 reactors; TinyGo is not needed)")
		if err != nil {
			return nil, cleanup, err
		}
		return []*exec.Cmd{cmd(dir, []string{"GOOS=wasip1", "GOARCH=wasm"}, goBin,
			"build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s", "-o", out, ".")}, cleanup, nil

	case langC:
		clang, err := tool("clang", "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32")
		if err != nil {
			return nil, cleanup, err
		}
		args := []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wl,--strip-all", "-o", out}
		if sdk != "" {
			args = append(args, "-I", filepath.Join(sdk, "c"))
		}
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.c"))
		return []*exec.Cmd{cmd(dir, nil, clang, append(args, srcs...)...)}, cleanup, nil

	case langRust:
		rustc, target, err := findRustc()
		if err != nil {
			return nil, cleanup, err
		}
		entry := ""
		for _, c := range []string{"src/lib.rs", "lib.rs", "main.rs", "src/main.rs"} {
			if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
				entry = c
				break
			}
		}
		if entry == "" {
			return nil, cleanup, errors.New("no src/lib.rs, lib.rs or main.rs (cargo projects without one are not supported; the build uses rustc alone)")
		}
		flags := []string{"--edition", "2021", "--target", target, "-O", "-C", "panic=abort"}
		src, _ := os.ReadFile(filepath.Join(dir, entry))
		if strings.Contains(string(src), "weir::") || strings.Contains(string(src), "use weir") {
			if sdk == "" {
				return nil, cleanup, errors.New("the plugin uses the weir crate; pass -sdk (Weir's sdk directory)")
			}
			tmp, err := os.MkdirTemp("", "weir-rust-")
			if err != nil {
				return nil, cleanup, err
			}
			cleanup = func() { os.RemoveAll(tmp) }
			steps = append(steps, cmd(dir, nil, rustc, append(flags, "--crate-type", "rlib", "--crate-name", "weir",
				filepath.Join(sdk, "rust", "src", "lib.rs"), "-o", filepath.Join(tmp, "libweir.rlib"))...))
			flags = append(flags, "--extern", "weir="+filepath.Join(tmp, "libweir.rlib"), "-L", tmp)
		}
		name := strings.NewReplacer("-", "_", ".", "_").Replace(filepath.Base(dir))
		steps = append(steps, cmd(dir, nil, rustc, append(flags, "-C", "lto", "-C", "strip=symbols",
			"--crate-type", "cdylib", "--crate-name", name, entry, "-o", out)...))
		return steps, cleanup, nil

	case langAS:
		node, err := tool("node", "apt-get install nodejs npm")
		if err != nil {
			return nil, cleanup, err
		}
		_ = node
		entry := ""
		for _, c := range []string{"assembly/index.ts", "index.ts", "plugin.ts"} {
			if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
				entry = filepath.Join(dir, c)
				break
			}
		}
		if entry == "" {
			return nil, cleanup, errors.New("no assembly/index.ts, index.ts or plugin.ts")
		}
		// asc runs from the project that has it installed, so its imports and --use resolve.
		root := ""
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "node_modules", ".bin", "asc")); err == nil {
				root = d
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		if root == "" && sdk != "" {
			if _, err := os.Stat(filepath.Join(sdk, "assemblyscript", "node_modules", ".bin", "asc")); err == nil {
				root = filepath.Join(sdk, "assemblyscript")
			}
		}
		if root == "" {
			return nil, cleanup, errors.New("the AssemblyScript compiler is not installed (npm install assemblyscript, or cd sdk/assemblyscript && npm ci)")
		}
		rel, err := filepath.Rel(root, entry)
		if err != nil {
			return nil, cleanup, err
		}
		args := []string{rel, "-O3", "--noAssert", "--exportStart", "_initialize", "-o", out}
		if b, err := os.ReadFile(filepath.Join(root, "assembly", "index.ts")); err == nil && strings.Contains(string(b), "weirAbort") {
			args = append(args, "--use", "abort=assembly/index/weirAbort")
		}
		return []*exec.Cmd{cmd(root, nil, filepath.Join(root, "node_modules", ".bin", "asc"), args...)}, cleanup, nil

	case langWAT:
		wat2wasm, err := tool("wat2wasm", "apt-get install wabt")
		if err != nil {
			return nil, cleanup, err
		}
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.wat"))
		if len(srcs) != 1 {
			return nil, cleanup, fmt.Errorf("want exactly one .wat file, found %d", len(srcs))
		}
		return []*exec.Cmd{cmd(dir, nil, wat2wasm, srcs[0], "-o", out)}, cleanup, nil
	}
	return nil, cleanup, fmt.Errorf("unknown language %q", lang)
}

// findRustc returns a rustc with the wasm32 WASI standard library and the target's name, which
// is wasm32-wasi for Debian's rustc 1.63 and wasm32-wasip1 for newer toolchains.
func findRustc() (string, string, error) {
	var candidates []string
	if r := os.Getenv("RUSTC"); r != "" {
		candidates = append(candidates, r)
	}
	candidates = append(candidates, "rustc", "/usr/bin/rustc")
	found := false
	for _, c := range candidates {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		found = true
		sysroot, err := exec.Command(p, "--print", "sysroot").Output()
		if err != nil {
			continue
		}
		for _, t := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(sysroot)), "lib", "rustlib", t, "lib")); err == nil {
				return p, t, nil
			}
		}
	}
	if !found {
		return "", "", errors.New("rustc not found in PATH; apt-get install rustc libstd-rust-dev-wasm32")
	}
	return "", "", errors.New("no rustc has the wasm32-wasi standard library; apt-get install libstd-rust-dev-wasm32 (or rustup target add wasm32-wasip1)")
}
