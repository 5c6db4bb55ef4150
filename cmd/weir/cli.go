package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/admin"
	"github.com/weir-gateway/weir/core/engine"
	"github.com/weir-gateway/weir/core/telemetry"
	_ "github.com/weir-gateway/weir/filters/all"
	_ "github.com/weir-gateway/weir/plugins/proxywasm" // the proxy-wasm plugin ABI
	_ "github.com/weir-gateway/weir/plugins/wasmhost"  // the http-wasm plugin ABI
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: weir <command> [flags]

commands:
  run -c FILE        start the gateway on FILE (default config/weir.yaml)
  validate -c FILE   check FILE; exit 0 when valid, else list every problem
  plugin new NAME | plugin build DIR | plugin inspect FILE.wasm
                     start a WebAssembly plugin project; build one from source;
                     describe a module (weir plugin help for more)
  version            print the version
`

func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "validate":
		return cmdValidate(rest, stdout, stderr)
	case "plugin":
		return cmdPlugin(rest, stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "weir %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "weir: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet("weir "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "config/weir.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "weir %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := engine.LoadConfig(path)
	if err == nil {
		err = engine.Check(cfg)
	}
	if err != nil {
		printInvalid(stderr, path, err)
		return 1
	}
	// No hash: it is keyed per process (see config.Config.Hash), so this one would match nothing.
	fmt.Fprintf(stdout, "%s: ok (%d routes, %d upstreams)\n", path, len(cfg.Routes), len(cfg.Upstreams))
	return 0
}

// printInvalid writes the problems of the config at path for a person: one per line, each
// naming the file, key path, route and filter where it applies.
func printInvalid(w io.Writer, path string, err error) {
	fmt.Fprintf(w, "%s: invalid config:\n", path)
	for _, line := range flatten(err) {
		// Config errors arrive redacted; this covers any other error quoting a value.
		fmt.Fprintf(w, "  %s\n", config.RedactText(line))
	}
}

// configError is a config the gateway cannot start on; `weir run` prints it as `weir validate`
// does rather than as one log line with every problem in it.
type configError struct {
	path string
	err  error
}

func (e *configError) Error() string { return fmt.Sprintf("load %s: %v", e.path, e.err) }
func (e *configError) Unwrap() error { return e.err }

// flatten lists the leaves of joined errors, one problem per line.
func flatten(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 2
	}
	out := telemetry.NewProcessLog(stderr) // JSON until run applies the config's log settings
	log := zerolog.New(out).With().Timestamp().Logger()
	if err := run(path, out, log); err != nil {
		if ce, ok := errors.AsType[*configError](err); ok {
			printInvalid(stderr, path, ce.err)
			return 1
		}
		log.Error().Str("error", config.RedactText(err.Error())).Msg("weir stopped")
		return 1
	}
	return 0
}

func run(path string, out *telemetry.ProcessLog, log zerolog.Logger) error {
	telemetry.SetBuildInfo(version)
	eng, err := engine.New(path, log)
	if err != nil {
		return &configError{path, err}
	}
	cfg := eng.Config()
	// Validated with the config; log settings apply at start only.
	if err := out.Configure(cfg.Log.Level, cfg.Log.Format); err != nil {
		_ = eng.Shutdown(context.Background())
		return fmt.Errorf("load %s: %w", path, err)
	}
	if err := eng.Listen(); err != nil {
		_ = eng.Shutdown(context.Background())
		return err
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- eng.ServeListeners() }()

	var adm *admin.Server
	if cfg.Server.Admin != "" {
		aln, err := net.Listen("tcp", cfg.Server.Admin)
		if err != nil {
			_ = eng.Shutdown(context.Background())
			return fmt.Errorf("listen admin: %w", err)
		}
		adm = admin.New(eng, admin.Options{
			Token: cfg.Server.AdminToken, Hosts: cfg.Server.AdminHosts, Pprof: cfg.Server.AdminPprof,
		}, log)
		go func() {
			if err := adm.Serve(aln); err != nil {
				serveErr <- fmt.Errorf("admin: %w", err)
			}
		}()
		log.Info().Str("admin", "http://"+aln.Addr().String()).Msg("admin api listening")
	}
	log.Info().Strs("listen", eng.ListenerURLs()).Str("config", path).
		Str("version", version).Int("routes", len(cfg.Routes)).Msg("weir listening")

	stopWatch, err := config.Watch(path, 250*time.Millisecond, func() {
		_, _ = eng.Reload("file") // the engine logs and records the outcome
	})
	if err != nil {
		log.Warn().Err(err).Msg("config file watch unavailable; reload with SIGHUP or the admin api")
		stopWatch = func() {}
	}
	defer stopWatch()
	defer watchPlugins(cfg, eng, log)()

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				_, _ = eng.Reload("signal")
				continue
			}
			log.Info().Str("signal", s.String()).Dur("drain_timeout", cfg.Server.DrainTimeout).Msg("draining")
			return shutdown(eng, adm, cfg.Server.DrainTimeout, log)
		case err := <-serveErr:
			_ = shutdown(eng, adm, cfg.Server.DrainTimeout, log)
			return err
		}
	}
}

func shutdown(eng *engine.Engine, adm *admin.Server, drain time.Duration, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := eng.Shutdown(ctx)
	if adm != nil {
		err = errors.Join(err, adm.Shutdown())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// Requests still running at the deadline are cut; that is what drain_timeout means.
		log.Warn().Msg("drain timeout reached; closing remaining connections")
		return nil
	}
	if err == nil {
		log.Info().Msg("drained; bye")
	}
	return err
}
