package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// invalidConfig has a problem of each kind: an unknown upstream, a bad regular expression, an
// unknown key in a filter's config and an unknown filter.
const invalidConfig = `
upstreams: { be: { targets: ["127.0.0.1:9000"] } }
routes:
  - name: a
    match: { path_prefix: / }
    upstream: nowhere
    filters:
      - headers: { request: { sett: { X-A: b } } }
  - name: b
    match: { path_regex: "(" }
    upstream: be
    filters:
      - no-such-filter: {}
`

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	write(t, good, `
upstreams: { be: { targets: ["127.0.0.1:9000"] } }
routes:
  - name: a
    match: { path_prefix: / }
    upstream: be
    filters:
      - headers: { request: { set: { X-A: b } } }
`)
	write(t, bad, invalidConfig)
	var out, errOut bytes.Buffer
	if code := cli([]string{"validate", "-c", good}, &out, &errOut); code != 0 {
		t.Fatalf("validate good config: exit %d, stderr:\n%s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := cli([]string{"validate", "-c", bad}, &out, &errOut); code != 1 {
		t.Fatalf("validate bad config: exit %d, want 1; stderr:\n%s", code, errOut.String())
	}
	// Every problem is listed, each naming the file, the route, and the filter where it applies.
	for _, want := range []string{`route "a"`, "nowhere", "no-such-filter", bad} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("validate output does not mention %q:\n%s", want, errOut.String())
		}
	}
	t.Logf("validate output:\n%s", errOut.String())
}

// TestValidateQuotesNoSecret: `weir validate` output goes to terminals and CI logs. The
// reproduction (a bearer token with a stray newline) and secrets quoted by other problems of
// the same config stay out of it, whether the config fails its schema checks or its build.
func TestValidateQuotesNoSecret(t *testing.T) {
	const filters = `
    filters:
      - headers: { request: { set: { Authorization: "Bearer upstream-s3cret\n", X-Api-Key: "hunter2-key\u0001" } } }
`
	for name, cfg := range map[string]string{
		// Valid schema: the problem is found when the filters are built.
		"build": "upstreams: { be: { kind: echo } }\nroutes:\n  - name: a\n    upstream: be" + filters,
		// Other problems too: the filters are checked beside the schema.
		"schema": "server: { admin: \"0.0.0.0:9901\", admin_token: \"\" }\nupstreams: { be: { kind: echo } }\nroutes:\n  - name: a\n    upstream: nowhere" + filters,
	} {
		path := filepath.Join(t.TempDir(), "weir.yaml")
		write(t, path, cfg)
		var out, errOut bytes.Buffer
		if code := cli([]string{"validate", "-c", path}, &out, &errOut); code != 1 {
			t.Fatalf("%s: exit %d, want 1; stderr:\n%s", name, code, errOut.String())
		}
		for _, secret := range []string{"upstream-s3cret", "hunter2-key"} {
			if strings.Contains(errOut.String(), secret) {
				t.Errorf("%s: validate output shows %q:\n%s", name, secret, errOut.String())
			}
		}
		if !strings.Contains(errOut.String(), "CR, LF or NUL") {
			t.Errorf("%s: validate output lost the problem:\n%s", name, errOut.String())
		}
		if name == "schema" && !strings.Contains(errOut.String(), "server.admin_insecure") {
			t.Errorf("schema: the non-loopback admin listener is not reported:\n%s", errOut.String())
		}
	}
}

// TestRunPrintsConfigErrorsLikeValidate: `weir run` on a config it cannot start prints the same
// problems as `weir validate`, one per line, rather than one log line with "\n" escapes.
func TestRunPrintsConfigErrorsLikeValidate(t *testing.T) {
	for name, cfg := range map[string]string{
		"schema": invalidConfig,
		// A valid schema whose filter fails to build.
		"build": `
server: { listen: "127.0.0.1:0", admin: "" }
upstreams: { be: { kind: echo } }
routes:
  - name: a
    upstream: be
    filters:
      - headers: { request: { set: { Authorization: "Bearer s3cret\n" } } }
`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "weir.yaml")
			write(t, path, cfg)
			var vOut, vErr, rOut, rErr bytes.Buffer
			if code := cli([]string{"validate", "-c", path}, &vOut, &vErr); code != 1 {
				t.Fatalf("validate: exit %d, want 1", code)
			}
			if code := cli([]string{"run", "-c", path}, &rOut, &rErr); code != 1 {
				t.Fatalf("run: exit %d, want 1; stderr:\n%s", code, rErr.String())
			}
			if rErr.String() != vErr.String() {
				t.Errorf("run prints\n%s\nvalidate prints\n%s", rErr.String(), vErr.String())
			}
			lines := strings.Split(strings.TrimSpace(rErr.String()), "\n")
			if len(lines) < 2 || lines[0] != path+": invalid config:" || strings.Contains(rErr.String(), `\n`) ||
				strings.Contains(rErr.String(), `"level"`) || strings.Contains(rErr.String(), "s3cret") {
				t.Errorf("run output is not one redacted problem per line:\n%s", rErr.String())
			}
			for _, l := range lines[1:] {
				if !strings.HasPrefix(l, "  "+path) {
					t.Errorf("problem line %q does not name the file", l)
				}
			}
			if name == "schema" && !strings.Contains(rErr.String(), `route "b"`) {
				t.Errorf("no problem names route b:\n%s", rErr.String())
			}
		})
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := cli([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "weir ") {
		t.Errorf("version: exit %d, out %q", code, out.String())
	}
	if code := cli([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if code := cli(nil, &out, &errOut); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
}

// buildWeir compiles the real binary once per test run.
func buildWeir(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weir")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build weir: %v", err)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// proc is a running weir process whose log lines are collected.
type proc struct {
	cmd  *exec.Cmd
	logs chan string
	done chan error
}

func startWeir(t *testing.T, bin, cfg, addr string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "run", "-c", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case p.logs <- sc.Text():
			default:
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("weir did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits for a log line containing want.
func (p *proc) waitLog(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-p.logs:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line containing %q", want)
		}
	}
}

func adminGet(t *testing.T, admin, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		t.Fatalf("GET admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// TestRunReloadAndDrain runs the real binary: SIGHUP and a file change reload it, and SIGTERM
// lets a slow in-flight request finish before the process exits 0.
func TestRunReloadAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		fmt.Fprint(w, r.Header.Get("X-Version"))
	})}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go slow.Serve(bln) //nolint:errcheck
	defer slow.Close()

	bin := buildWeir(t)
	addr, admin := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "weir.yaml")
	conf := func(v string) string {
		return fmt.Sprintf(`
server: { listen: %q, admin: %q, drain_timeout: 5s }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes:
  - name: all
    match: { path_prefix: / }
    upstream: be
    filters:
      - headers: { request: { set: { X-Version: %q } } }
`, addr, admin, bln.Addr().String(), v)
	}
	write(t, cfg, conf("one"))
	p := startWeir(t, bin, cfg, addr)

	body := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := body("/"); got != "one" {
		t.Fatalf("body = %q, want one", got)
	}
	// File change → reload.
	write(t, cfg, conf("two"))
	p.waitLog(t, `"trigger":"file"`)
	if got := body("/"); got != "two" {
		t.Fatalf("after file change body = %q, want two", got)
	}
	// An invalid file is rejected; the running config keeps serving.
	write(t, cfg, "routes: [ {name: broken} ]\n")
	p.waitLog(t, "reload rejected")
	if got := body("/"); got != "two" {
		t.Fatalf("after invalid file body = %q, want two", got)
	}
	// SIGHUP → reload.
	write(t, cfg, conf("three"))
	p.waitLog(t, "config reloaded") // the file watcher may win the race; either reload is fine
	if got := body("/"); got != "three" {
		t.Fatalf("after reload body = %q, want three", got)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(adminGet(t, admin, "/reloads"), `"trigger": "signal"`) })
	// Admin API reload answers with the outcome.
	resp, err := http.Post("http://"+admin+"/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /reload = %d", resp.StatusCode)
	}

	// SIGTERM while a slow request is in flight: it completes, then the process exits 0.
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- strconv.Itoa(resp.StatusCode) + " " + string(b)
	}()
	time.Sleep(300 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "200 three" {
		t.Errorf("in-flight request during drain = %q, want 200 three", g)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("weir exit: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("weir did not exit after SIGTERM")
	}
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestStreamingKeepsMemorySmall sends a 1 GiB upload and a 1 GiB download through the real
// binary and checks the gateway's peak RSS stays under 100 MB: bodies stream, never buffer.
func TestStreamingKeepsMemorySmall(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB through the gateway")
	}
	const size = 1 << 30
	uploaded := make(chan int64, 1)
	be := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			uploaded <- n
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = io.CopyN(w, zeros{}, size)
	})}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go be.Serve(bln) //nolint:errcheck
	defer be.Close()

	bin := buildWeir(t)
	addr := freePort(t)
	cfg := filepath.Join(t.TempDir(), "weir.yaml")
	write(t, cfg, fmt.Sprintf(`
server: { listen: %q, admin: "", max_body_bytes: 2GiB }
access_log: { enabled: false }
upstreams: { be: { targets: [%q], timeout: 5m } }
routes: [ { name: all, match: { path_prefix: / }, upstream: be } ]
`, addr, bln.Addr().String()))
	p := startWeir(t, bin, cfg, addr)

	resp, err := http.Post("http://"+addr+"/up", "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	resp.Body.Close()
	if got := <-uploaded; resp.StatusCode != 200 || got != size {
		t.Fatalf("upload: status %d, backend got %d bytes, want 200 and %d", resp.StatusCode, got, size)
	}
	resp, err = http.Get("http://" + addr + "/down")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, err %v; want %d", n, err, size)
	}
	peak := vmHWM(t, p.cmd.Process.Pid)
	t.Logf("1 GiB up + 1 GiB down: gateway peak RSS %d KiB", peak)
	if peak > 100*1000 {
		t.Errorf("gateway peak RSS %d KiB, want < 100 MB", peak)
	}
}
