package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/weir-gateway/weir/sdk"
)

func cmdPluginBuild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("weir plugin build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output file (default DIR/<name of DIR>.wasm)")
	sdkDir := fs.String("sdk", os.Getenv("WEIR_SDK"), "Weir's sdk directory, for a C header, Rust crate or AssemblyScript compiler the project lacks (default: found above DIR; else the copy built into weir)")
	if err := fs.Parse(flagsFirst(args)); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, pluginUsage)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "weir plugin build: "+format+"\n", a...)
		return 1
	}
	dir, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return fail("%v", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fail("%s is not a directory (weir plugin new NAME starts a project)", fs.Arg(0))
	}
	if *out == "" {
		*out = filepath.Join(dir, filepath.Base(dir)+".wasm")
	}
	if *out, err = filepath.Abs(*out); err != nil {
		return fail("%v", err)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return fail("%v", err)
	}
	if *sdkDir == "" {
		*sdkDir = findSDK(dir)
	}
	lang, err := detectLanguage(dir)
	if err != nil {
		return fail("%v", err)
	}
	plan, err := buildSteps(lang, dir, *out, *sdkDir)
	defer plan.cleanup()
	if err != nil {
		return fail("%s: %v", lang, err)
	}
	fmt.Fprintf(stderr, "weir plugin build: %s with %s\n", lang, plan.toolchain)
	for _, cmd := range plan.steps {
		fmt.Fprintf(stderr, "+ %s\n", strings.Join(cmd.Args, " "))
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.MultiWriter(stderr, &buf), io.MultiWriter(stderr, &buf)
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stderr, "weir plugin build: %s build failed: %v\n", lang, err)
			for _, h := range guidance(lang, buf.String(), dir) {
				fmt.Fprintf(stderr, "  hint: %s\n", h)
			}
			return 1
		}
	}
	wasm, err := os.ReadFile(*out)
	if err != nil {
		return fail("%v", err)
	}
	rep, err := inspectModule(wasm)
	if err != nil {
		return fail("built %s, but it does not compile: %v", *out, err)
	}
	r := rep.Report
	if !r.Loads {
		return fail("built %s (%s), but it would not load: %s", *out, lang, r.LoadError)
	}
	fmt.Fprintf(stdout, "built %s (%s, %d bytes, %s, sha256 %s)\n", *out, lang, r.Size, r.ABI, r.SHA256)
	return 0
}

// tool finds name on PATH or returns an error saying what to install.
func tool(name, install string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH; %s", name, install)
	}
	return p, nil
}

// firstLine runs a toolchain's version command and returns the first line it prints.
func firstLine(name string, args ...string) string {
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown version"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(line)
}

// plan is how a plugin is built: which toolchain, and the commands.
type plan struct {
	toolchain string
	steps     []*exec.Cmd
	cleanup   func()
}

// The Debian packages each toolchain needs (bookworm; clang's runtime package is versioned).
const (
	installGo   = "install Go 1.24 or later (https://go.dev/dl, or apt-get install golang from bookworm-backports); stock Go builds wasip1 reactors, TinyGo is not needed"
	installC    = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32"
	installRust = "apt-get install rustc libstd-rust-dev-wasm32 (or rustup target add wasm32-wasip1)"
	installNode = "apt-get install nodejs npm"
)

// buildSteps returns the commands that build the plugin in dir into out.
func buildSteps(lang, dir, out, sdkDir string) (p plan, err error) {
	var tmp string
	p.cleanup = func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}
	// scratch is a temporary directory for SDK files the project does not carry.
	scratch := func() (string, error) {
		if tmp == "" {
			var err error
			tmp, err = os.MkdirTemp("", "weir-plugin-build-")
			return tmp, err
		}
		return tmp, nil
	}
	cmd := func(wd string, env []string, name string, args ...string) *exec.Cmd {
		c := exec.Command(name, args...)
		c.Dir = wd
		c.Env = append(os.Environ(), env...)
		return c
	}
	switch lang {
	case langGo:
		goBin, err := tool("go", installGo)
		if err != nil {
			return p, err
		}
		if findUp(dir, "go.mod") == "" {
			return p, fmt.Errorf("no go.mod in %s or above it: a Go plugin is a module.\n"+
				"  Start a project with the SDK copied in:  weir plugin new NAME --lang go\n"+
				"  or, in %s:  go mod init NAME\n"+
				"  and, if it imports the Weir SDK (which is not on the Go module proxy):\n"+
				"    weir plugin sdk go weirsdk\n"+
				"    go mod edit -require=%s@v0.0.0 -replace=%s=./weirsdk", dir, dir, sdk.GoModule, sdk.GoModule)
		}
		p.toolchain = firstLine(goBin, "version") + " (" + goBin + ")"
		p.steps = []*exec.Cmd{cmd(dir, []string{"GOOS=wasip1", "GOARCH=wasm"}, goBin,
			"build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s", "-o", out, ".")}
		return p, nil

	case langC:
		clang, err := tool("clang", installC)
		if err != nil {
			return p, err
		}
		p.toolchain = firstLine(clang, "--version") + " (" + clang + ")"
		args := []string{"--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall", "-Wextra", "-Wl,--strip-all"}
		args = append(args, strings.Fields(os.Getenv("CFLAGS"))...)
		args = append(args, "-o", out)
		if !fileExists(filepath.Join(dir, "weir.h")) {
			// The header: the repository's, or the one built into this binary.
			inc := ""
			if sdkDir != "" && fileExists(filepath.Join(sdkDir, "c", "weir.h")) {
				inc = filepath.Join(sdkDir, "c")
			} else {
				var err error
				if inc, err = scratch(); err != nil {
					return p, err
				}
				files, _ := sdk.Files(langC)
				if err := writeFiles(inc, files); err != nil {
					return p, err
				}
			}
			args = append(args, "-I", inc)
		}
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.c"))
		p.steps = []*exec.Cmd{cmd(dir, nil, clang, append(args, srcs...)...)}
		return p, nil

	case langRust:
		rustc, target, err := findRustc()
		if err != nil {
			return p, err
		}
		p.toolchain = firstLine(rustc, "--version") + ", target " + target + " (" + rustc + ")"
		entry := ""
		for _, c := range []string{"src/lib.rs", "lib.rs", "main.rs", "src/main.rs"} {
			if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
				entry = c
				break
			}
		}
		if entry == "" {
			return p, errors.New("no src/lib.rs, lib.rs or main.rs (cargo projects without one are not supported; the build uses rustc alone)")
		}
		flags := []string{"--edition", "2021", "--target", target, "-O", "-C", "panic=abort"}
		src, _ := os.ReadFile(filepath.Join(dir, entry))
		if strings.Contains(string(src), "weir::") || strings.Contains(string(src), "use weir") {
			// The weir crate: the project's copy (weir plugin new puts it in weir/), the
			// repository's, or the one built into this binary.
			crate := filepath.Join(dir, "weir", "lib.rs")
			if _, err := os.Stat(crate); err != nil && sdkDir != "" {
				crate = filepath.Join(sdkDir, "rust", "src", "lib.rs")
			}
			t, err := scratch()
			if err != nil {
				return p, err
			}
			if _, err := os.Stat(crate); err != nil {
				files, _ := sdk.Files(langRust)
				if err := writeFiles(t, files); err != nil {
					return p, err
				}
				crate = filepath.Join(t, "weir", "lib.rs")
			}
			p.steps = append(p.steps, cmd(dir, nil, rustc, append(flags, "--crate-type", "rlib", "--crate-name", "weir",
				crate, "-o", filepath.Join(t, "libweir.rlib"))...))
			flags = append(flags, "--extern", "weir="+filepath.Join(t, "libweir.rlib"), "-L", t)
		}
		name := strings.NewReplacer("-", "_", ".", "_").Replace(filepath.Base(dir))
		p.steps = append(p.steps, cmd(dir, nil, rustc, append(flags, "-C", "lto", "-C", "strip=symbols",
			"--crate-type", "cdylib", "--crate-name", name, entry, "-o", out)...))
		return p, nil

	case langAS:
		node, err := tool("node", installNode)
		if err != nil {
			return p, err
		}
		entry := ""
		for _, c := range []string{"assembly/index.ts", "index.ts", "plugin.ts"} {
			if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
				entry = filepath.Join(dir, c)
				break
			}
		}
		if entry == "" {
			return p, errors.New("no assembly/index.ts, index.ts or plugin.ts")
		}
		// asc runs in the project root (the package.json naming assemblyscript), so --use and
		// the imports resolve as they do for npx asc there.
		root := dir
		for d := dir; ; d = filepath.Dir(d) {
			if packageNames(filepath.Join(d, "package.json"), "assemblyscript") {
				root = d
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		asc := findUp(root, filepath.Join("node_modules", ".bin", "asc"))
		if asc == "" && sdkDir != "" {
			if c := filepath.Join(sdkDir, "assemblyscript", "node_modules", ".bin", "asc"); fileExists(c) {
				asc = c
			}
		}
		if asc == "" {
			return p, fmt.Errorf("the AssemblyScript compiler is not installed: run `npm ci` in %s (package.json pins assemblyscript; npm needs the registry once, later builds are offline), or npm install --save-dev assemblyscript@%s; node and npm: %s",
				root, sdk.AssemblyScriptVersion, installNode)
		}
		version := "assemblyscript"
		var pkg struct{ Version string }
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(asc)), "assemblyscript", "package.json")); err == nil && json.Unmarshal(b, &pkg) == nil {
			version += " " + pkg.Version
		}
		p.toolchain = fmt.Sprintf("%s, node %s (%s)", version, firstLine(node, "--version"), asc)
		rel, err := filepath.Rel(root, entry)
		if err != nil {
			return p, err
		}
		args := []string{rel, "-O3", "--noAssert", "--exportStart", "_initialize", "-o", out}
		if use := abortHook(root); use != "" {
			args = append(args, "--use", "abort="+use)
		}
		p.steps = []*exec.Cmd{cmd(root, nil, asc, args...)}
		return p, nil

	case langWAT:
		wat2wasm, err := tool("wat2wasm", "apt-get install wabt")
		if err != nil {
			return p, err
		}
		p.toolchain = "wat2wasm " + firstLine(wat2wasm, "--version") + " (" + wat2wasm + ")"
		srcs, _ := filepath.Glob(filepath.Join(dir, "*.wat"))
		if len(srcs) != 1 {
			return p, fmt.Errorf("want exactly one .wat file, found %d", len(srcs))
		}
		p.steps = []*exec.Cmd{cmd(dir, nil, wat2wasm, srcs[0], "-o", out)}
		return p, nil
	}
	return p, fmt.Errorf("unknown language %q", lang)
}

var weirAbortExport = regexp.MustCompile(`(?m)^export function weirAbort\(`)

// abortHook names the SDK's abort replacement for asc's --use, as a path under root without
// its extension ("assembly/weir/weirAbort"), or "" when the project has no copy of the SDK.
func abortHook(root string) string {
	srcs, _ := filepath.Glob(filepath.Join(root, "assembly", "*.ts"))
	for _, s := range srcs {
		if b, err := os.ReadFile(s); err == nil && weirAbortExport.Match(b) {
			return "assembly/" + strings.TrimSuffix(filepath.Base(s), ".ts") + "/weirAbort"
		}
	}
	return ""
}

// findUp returns the path of name in dir or the nearest parent holding it, or "".
func findUp(dir, name string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// guidance turns a failed build's output into what to do about it.
func guidance(lang, output, dir string) []string {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(output, s) {
				return true
			}
		}
		return false
	}
	var h []string
	switch lang {
	case langGo:
		if has(sdk.GoModule) && has("no required module provides", "missing go.sum entry", "reading https://",
			"unrecognized import path", "cannot find module", "404 Not Found", "410 Gone", "unknown revision", "verifying") {
			h = append(h, fmt.Sprintf("the Weir Go SDK is not on the Go module proxy; copy it into the project and point go.mod at the copy:\n"+
				"    (cd %s && weir plugin sdk go weirsdk && go mod edit -require=%s@v0.0.0 -replace=%s=./weirsdk)", dir, sdk.GoModule, sdk.GoModule))
		}
		if has("unsupported GOOS/GOARCH pair wasip1", "-buildmode=c-shared not supported on wasip1", "go:wasmexport") {
			h = append(h, "Go plugins need Go 1.24 or later (go:wasmexport and -buildmode=c-shared on wasip1); "+installGo)
		}
		if has("go.mod file not found") {
			h = append(h, "run weir plugin new NAME, or go mod init NAME in "+dir)
		}
	case langC:
		if has("wasm-ld") && has("not found", "doesn't exist", "No such file") {
			h = append(h, "clang links wasm with wasm-ld: apt-get install lld")
		}
		if has("stdint.h' file not found", "stdlib.h' file not found", "string.h' file not found", "-lc", "crt1-reactor.o", "wasi-sysroot") {
			h = append(h, "the WASI C library is missing: apt-get install wasi-libc")
		}
		if has("libclang_rt.builtins-wasm32.a") {
			h = append(h, "clang's wasm32 runtime is missing: apt-get install libclang-rt-N-dev-wasm32, N being clang's major version (14 on bookworm)")
		}
		if has("weir.h' file not found") {
			h = append(h, "copy the SDK header in: weir plugin sdk c "+dir)
		}
	case langRust:
		if has("can't find crate for `std`", "can't find crate for `core`", "can't find crate for `alloc`") {
			h = append(h, "the wasm32 WASI standard library is missing: "+installRust)
		}
		if has("rust-lld", "linker `") && has("not found") {
			h = append(h, "rustc links wasm with rust-lld: apt-get install lld")
		}
		if has("can't find crate for `weir`", "crate or module `weir`", "unresolved import `weir`") {
			h = append(h, "copy the SDK crate in: weir plugin sdk rust "+dir)
		}
	case langAS:
		if has("Cannot find module", "ERR_MODULE_NOT_FOUND") {
			h = append(h, "the AssemblyScript install is incomplete: rm -rf node_modules && npm ci")
		}
		if has("env.abort", "abort") && abortHook(dir) == "" {
			h = append(h, "copy the SDK in (its weirAbort replaces env.abort, which the host does not provide): weir plugin sdk assemblyscript "+dir)
		}
	}
	return h
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
		return "", "", errors.New("rustc not found in PATH; " + installRust)
	}
	return "", "", errors.New("no rustc has the wasm32-wasi standard library; " + installRust)
}
