package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/plugins/proxywasm"
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
  weir plugin new NAME [--lang go|c|rust|assemblyscript] [-dir DIR]
                                          start a plugin project in ./NAME (default Go) with the
                                          SDK copied in and a weir.yaml that runs it
  weir plugin build [-o OUT.wasm] [-sdk DIR] DIR
                                          build the plugin in DIR into DIR/<name of DIR>.wasm
                                          with its language's toolchain: Go (go.mod or *.go),
                                          Rust (Cargo.toml, lib.rs, main.rs), AssemblyScript
                                          (asconfig.json, package.json naming assemblyscript,
                                          or *.ts), C (*.c), WebAssembly text (*.wat)
  weir plugin sdk go|c|rust|assemblyscript DIR
                                          copy that SDK's sources into DIR
  weir plugin inspect [-json] FILE.wasm   ABI, exports, imports, memory, and whether it would load
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
	case "new":
		return cmdPluginNew(args[1:], stdout, stderr)
	case "sdk":
		return cmdPluginSDK(args[1:], stdout, stderr)
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
	report, err := inspectModule(wasm)
	if err != nil {
		fmt.Fprintf(stderr, "weir plugin inspect: %s: %v\n", path, err)
		return 1
	}
	r := report.Report
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report)
	} else {
		printReport(stdout, path, report)
	}
	if !r.Loads {
		return 1
	}
	return 0
}

// inspectReport is what weir plugin inspect prints: the module, and for a proxy-wasm module
// its ABI version, callbacks and the imports this host does not provide or answers
// Unimplemented.
type inspectReport struct {
	*wasmhost.Report
	ProxyWasm *proxywasm.Report `json:"proxy_wasm,omitempty"`
}

// inspectModule reports on a module with the loader of its ABI: Loads and LoadError are the
// proxy-wasm loader's answer for a proxy-wasm module (the http-wasm loader refuses them all).
func inspectModule(wasm []byte) (inspectReport, error) {
	r, err := wasmhost.Inspect(wasm)
	if err != nil {
		return inspectReport{}, err
	}
	report := inspectReport{Report: r}
	if r.ABI == wasmhost.ABIProxyWasm {
		pw, err := proxywasm.Inspect(wasm)
		if err != nil {
			return inspectReport{}, err
		}
		report.ProxyWasm = pw
		r.Loads, r.LoadError = pw.Loads, pw.LoadError
	}
	return report, nil
}

func printReport(w io.Writer, path string, rep inspectReport) {
	r := rep.Report
	fmt.Fprintf(w, "%s\n  size     %d bytes\n  sha256   %s\n", path, r.Size, r.SHA256)
	abi := r.ABI
	switch r.ABI {
	case wasmhost.ABIProxyWasm:
		if pw := rep.ProxyWasm; pw != nil && pw.Version != "" {
			abi += " " + pw.Version
		} else {
			abi += " (exports proxy_on_* but no proxy_abi_version_*)"
		}
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
	if pw := rep.ProxyWasm; pw != nil {
		fmt.Fprintf(w, "  callbacks\n")
		for _, c := range pw.Callbacks {
			fmt.Fprintf(w, "    %s\n", c)
		}
		if len(pw.Missing) > 0 {
			fmt.Fprintf(w, "  imports this host does not provide (the module cannot load)\n")
			for _, m := range pw.Missing {
				fmt.Fprintf(w, "    %s\n", m)
			}
		}
		if len(pw.Unimplemented) > 0 {
			fmt.Fprintf(w, "  imports that answer Unimplemented\n")
			for _, u := range pw.Unimplemented {
				fmt.Fprintf(w, "    %s\n", u)
			}
		}
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
