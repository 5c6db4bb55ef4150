package config

import (
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// watchDebounce is short so the tests run fast, yet long against the writes in one burst.
const watchDebounce = 100 * time.Millisecond

// startWatch watches path and returns a counter of onChange calls.
func startWatch(t *testing.T, path string) (*atomic.Int32, func()) {
	t.Helper()
	var n atomic.Int32
	stop, err := Watch(path, watchDebounce, func() { n.Add(1) })
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(stop)
	return &n, stop
}

// waitCount waits until n reaches want, then a little longer to catch extra calls.
func waitCount(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * watchDebounce)
	if got := n.Load(); got != want {
		t.Errorf("onChange called %d times, want %d", got, want)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	write(t, path, "a: 1")
	n, _ := startWatch(t, path)
	write(t, path, "a: 2")
	waitCount(t, n, 1)
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	write(t, path, "a: 1")
	n, _ := startWatch(t, path)
	write(t, filepath.Join(dir, "other.yaml"), "b: 1")
	waitCount(t, n, 0)
}

func TestWatchRenameReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	write(t, path, "a: 1")
	n, _ := startWatch(t, path)
	// What editors do on save: write a temporary file, rename it over the original.
	tmp := filepath.Join(dir, ".weir.yaml.swp")
	write(t, tmp, "a: 2")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitCount(t, n, 1)
	// The watch survives the replace.
	write(t, path, "a: 3")
	waitCount(t, n, 2)
}

func TestWatchSymlinkSwap(t *testing.T) {
	// The layout Kubernetes uses for a mounted ConfigMap: weir.yaml -> ..data/weir.yaml,
	// ..data -> ..v1; an update creates ..v2 and renames a new ..data link over the old one.
	dir := t.TempDir()
	for _, v := range []string{"..v1", "..v2"} {
		if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, v, "weir.yaml"), "v: "+v)
	}
	mustSymlink(t, "..v1", filepath.Join(dir, "..data"))
	mustSymlink(t, filepath.Join("..data", "weir.yaml"), filepath.Join(dir, "weir.yaml"))
	n, _ := startWatch(t, filepath.Join(dir, "weir.yaml"))

	mustSymlink(t, "..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitCount(t, n, 1)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
}

func TestWatchBurstIsOneCall(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	write(t, path, "a: 0")
	n, _ := startWatch(t, path)
	// Back-to-back writes: each makes several events, all well inside one debounce window.
	for i := range 10 {
		write(t, path, "a: "+string(rune('0'+i)))
	}
	waitCount(t, n, 1)
}

func TestWatchStop(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	path := filepath.Join(dir, "weir.yaml")
	write(t, path, "a: 1")
	n, stop := startWatch(t, path)
	write(t, path, "a: 2")
	// Stop inside the debounce window: the pending call must not happen.
	stop()
	stop() // idempotent
	time.Sleep(2 * watchDebounce)
	if got := n.Load(); got != 0 {
		t.Errorf("onChange called %d times after stop", got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before Watch, %d after stop", before, after)
	}
}

func TestWatchMissingDir(t *testing.T) {
	if _, err := Watch(filepath.Join(t.TempDir(), "nope", "weir.yaml"), 0, func() {}); err == nil {
		t.Error("Watch of a file in a missing directory succeeded")
	}
}
