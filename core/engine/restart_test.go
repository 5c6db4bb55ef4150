package engine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRunningKeepsRestartOnlySettings: a reload that changes listener settings applies the
// rest; Running shows the start values of those settings (what is in effect) and the new
// per-snapshot ones, and RestartOnly names each changed setting.
func TestRunningKeepsRestartOnlySettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeConfig(t, path, "127.0.0.1:1", "1s", "a")
	e, err := New(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown(t.Context()) //nolint:errcheck
	if got := e.Running(); got != e.Config() {
		t.Errorf("before any change Running() = %p, want Config() %p", got, e.Config())
	}
	boot := e.Config()

	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "drain_timeout: 5s }",
		`drain_timeout: 9s, idle_timeout: 7s, via: edge-2, trusted_proxies: ["10.0.0.0/8"] }
access_log: { enabled: false, sample: 3 }
log: { level: debug }`, 1)
	changed = strings.Replace(changed, "access_log: { enabled: false }\n", "", 1)
	changed = strings.Replace(changed, "path: /plain", "path: /plain2", 1)
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reload("test"); err != nil {
		t.Fatal(err)
	}
	file, run := e.Config(), e.Running()
	if file.Server.DrainTimeout != 9*time.Second {
		t.Fatalf("Config().Server.DrainTimeout = %s, want the file's 9s", file.Server.DrainTimeout)
	}
	if run.Server.DrainTimeout != 5*time.Second || run.Server.IdleTimeout != boot.Server.IdleTimeout || run.AccessLog.Sample != boot.AccessLog.Sample || run.Log != boot.Log {
		t.Errorf("Running() server %+v access_log %+v, want the start values", run.Server, run.AccessLog)
	}
	if run.Server.Via != "edge-2" || !slices.Equal(run.Server.TrustedProxies, []string{"10.0.0.0/8"}) {
		t.Errorf("Running() via %q trusted_proxies %v, want the reloaded values (applied per snapshot)", run.Server.Via, run.Server.TrustedProxies)
	}
	if run.Routes[1].Match.Path != "/plain2" || run.Hash != file.Hash {
		t.Errorf("Running() routes or hash are not the reloaded ones: %q %s", run.Routes[1].Match.Path, run.Hash)
	}
	want := []string{"server.drain_timeout", "server.idle_timeout", "access_log.sample", "log.level"}
	if got := RestartOnly(run, file); !slices.Equal(got, want) {
		t.Errorf("RestartOnly(running, file) = %v, want %v", got, want)
	}
	if got := RestartOnly(boot, run); len(got) != 0 {
		t.Errorf("RestartOnly(start, running) = %v, want none", got)
	}
	if boot.Server.DrainTimeout != 5*time.Second || file.Server.DrainTimeout != 9*time.Second {
		t.Error("Running() changed a config it was built from")
	}
}
