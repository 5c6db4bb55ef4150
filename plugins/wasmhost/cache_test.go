package wasmhost

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"

	"github.com/weir-gateway/weir/plugins/wasmhost/wasmtest"
)

// constModule returns a module whose export f returns v. Modules for different v have the
// same shape, so wazero would load one's cache entry for the other without complaint.
func constModule(v int32) []byte {
	return (&wasmtest.Module{NoMemory: true, Funcs: []wasmtest.Func{
		{Results: []byte{wasmtest.I32}, Body: wasmtest.NewCode().I32(v), Export: "f"},
	}}).Encode()
}

var (
	moduleA = constModule(1)
	moduleB = constModule(2)
)

// openTestCache opens the cache in dir as a fresh process would, and closes it with the test.
func openTestCache(t *testing.T, dir string) *codeCache {
	t.Helper()
	c, err := openCodeCache(dir, zerolog.Nop())
	if err != nil {
		t.Fatalf("open cache: %v", err)
	}
	t.Cleanup(func() { _ = c.wz.Close(context.Background()) })
	return c
}

// runConst compiles wasm through c and returns what its f returns.
func runConst(t *testing.T, c *codeCache, wasm []byte) int32 {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(c.wz))
	defer rt.Close(ctx)
	code, err := c.compile(ctx, rt, wasm, zerolog.Nop())
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return callConst(t, rt, code)
}

func callConst(t *testing.T, rt wazero.Runtime, code wazero.CompiledModule) int32 {
	t.Helper()
	ctx := context.Background()
	mod, err := rt.InstantiateModule(ctx, code, wazero.NewModuleConfig())
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	res, err := mod.ExportedFunction("f").Call(ctx)
	if err != nil {
		t.Fatalf("call f: %v", err)
	}
	return int32(res[0])
}

// entryOf compiles wasm into a fresh cache on dir and returns the entry that compile wrote.
func entryOf(t *testing.T, dir string, wasm []byte) string {
	t.Helper()
	before, err := listEntries(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := openTestCache(t, dir)
	runConst(t, c, wasm)
	after, err := listEntries(dir)
	if err != nil {
		t.Fatal(err)
	}
	var added []string
	for p := range after {
		if _, ok := before[p]; !ok {
			added = append(added, p)
		}
	}
	if len(added) != 1 {
		t.Fatalf("compile wrote %d entries, want 1: %v", len(added), added)
	}
	return added[0]
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCacheSwappedEntryWithoutSealsRunsOtherCode shows the attack the seals stop: with
// wazero's file cache alone, B's entry copied over A's makes A run B's code after a restart.
func TestCacheSwappedEntryWithoutSealsRunsOtherCode(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	run := func(wasm []byte) int32 {
		wz, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer wz.Close(ctx)
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(wz))
		defer rt.Close(ctx)
		code, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			t.Fatal(err)
		}
		return callConst(t, rt, code)
	}
	names := func() map[string]bool {
		e, err := listEntries(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for p := range e {
			out[p] = true
		}
		return out
	}
	run(moduleA)
	entryA := ""
	for p := range names() {
		entryA = p
	}
	run(moduleB)
	entryB := ""
	for p := range names() {
		if p != entryA {
			entryB = p
		}
	}
	copyFile(t, entryB, entryA)
	if got := run(moduleA); got != 2 {
		t.Skipf("wazero alone now refuses a swapped entry (A returned %d); the sealed tests still apply", got)
	}
}

// TestCacheTamperedEntryIsDiscarded is the reproduction: whatever is done to module A's
// entry, a restart runs A's own code, discards the entry, recompiles, and the restart after
// that uses the fresh entry again.
func TestCacheTamperedEntryIsDiscarded(t *testing.T) {
	otherKey := func(t *testing.T, dir, entryA, entryB string) {
		// Another installation's cache, with B's code sealed under A's name and its own key.
		other := t.TempDir()
		oc := openTestCache(t, other)
		sub := filepath.Base(filepath.Dir(entryA))
		forged := filepath.Join(other, sub, filepath.Base(entryA))
		copyFile(t, entryB, forged)
		oc.mu.Lock()
		if err := oc.seal(forged, [32]byte{}); err != nil {
			t.Fatal(err)
		}
		oc.mu.Unlock()
		copyFile(t, forged, entryA)
		copyFile(t, forged+sealSuffix, entryA+sealSuffix)
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir, entryA, entryB string)
	}{
		{"B's entry over A's", func(t *testing.T, dir, a, b string) { copyFile(t, b, a) }},
		{"B's entry and seal over A's", func(t *testing.T, dir, a, b string) {
			copyFile(t, b, a)
			copyFile(t, b+sealSuffix, a+sealSuffix)
		}},
		{"B's entry renamed onto A's", func(t *testing.T, dir, a, b string) {
			if err := os.Rename(b, a); err != nil {
				t.Fatal(err)
			}
		}},
		{"A's code altered", func(t *testing.T, dir, a, b string) {
			raw, err := os.ReadFile(a)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/2] ^= 0x01
			if err := os.WriteFile(a, raw, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"A's entry truncated", func(t *testing.T, dir, a, b string) {
			if err := os.Truncate(a, 10); err != nil {
				t.Fatal(err)
			}
		}},
		{"A's seal removed", func(t *testing.T, dir, a, b string) {
			if err := os.Remove(a + sealSuffix); err != nil {
				t.Fatal(err)
			}
		}},
		{"A's entry a symlink to B's", func(t *testing.T, dir, a, b string) {
			if err := os.Remove(a); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(b, a); err != nil {
				t.Fatal(err)
			}
		}},
		{"sealed with another installation's key", otherKey},
		{"key replaced", func(t *testing.T, dir, a, b string) {
			copyFile(t, b, a)
			if err := os.Remove(filepath.Join(dir, cacheKeyFile)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			entryA := entryOf(t, dir, moduleA)
			entryB := entryOf(t, dir, moduleB)
			tt.tamper(t, dir, entryA, entryB)

			c := openTestCache(t, dir)
			if got := runConst(t, c, moduleA); got != 1 {
				t.Fatalf("module A returned %d after a restart: it ran other code", got)
			}
			if c.rejected.Load() == 0 || c.compiled.Load() != 1 {
				t.Errorf("rejected %d, compiled %d; want the entry discarded and A recompiled", c.rejected.Load(), c.compiled.Load())
			}

			c = openTestCache(t, dir)
			if got := runConst(t, c, moduleA); got != 1 {
				t.Fatalf("module A returned %d", got)
			}
			if c.rejected.Load() != 0 || c.hits.Load() != 1 {
				t.Errorf("second restart: rejected %d, hits %d; want the fresh entry reused", c.rejected.Load(), c.hits.Load())
			}
		})
	}
}

// TestCacheEntryChangedWhileRunning: an entry replaced after the cache was opened is caught
// before the next compile of its module, not only at start.
func TestCacheEntryChangedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	entryA := entryOf(t, dir, moduleA)
	entryB := entryOf(t, dir, moduleB)
	c := openTestCache(t, dir)
	copyFile(t, entryB, entryA)
	if got := runConst(t, c, moduleA); got != 1 {
		t.Fatalf("module A returned %d", got)
	}
	if c.rejected.Load() != 1 {
		t.Errorf("rejected %d, want 1", c.rejected.Load())
	}
}

// TestCacheRestartReusesEntries: a restart with a warm directory compiles nothing, and the
// figures show what that saves.
func TestCacheRestartReusesEntries(t *testing.T) {
	dir := t.TempDir()
	wasm := bigModule(2000)
	timed := func() (*codeCache, time.Duration) {
		c := openTestCache(t, dir)
		ctx := context.Background()
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(c.wz))
		defer rt.Close(ctx)
		start := time.Now()
		if _, err := c.compile(ctx, rt, wasm, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		return c, time.Since(start)
	}
	cold, coldTime := timed()
	if cold.compiled.Load() != 1 {
		t.Fatalf("cold start: compiled %d, want 1", cold.compiled.Load())
	}
	warm, warmTime := timed()
	if warm.compiled.Load() != 0 || warm.hits.Load() != 1 || warm.rejected.Load() != 0 {
		t.Fatalf("warm start: compiled %d, hits %d, rejected %d; want the entry reused", warm.compiled.Load(), warm.hits.Load(), warm.rejected.Load())
	}
	t.Logf("%d-byte module: cold compile %v, warm (verify + load) %v", len(wasm), coldTime, warmTime)
}

// bigModule returns a module with n small functions, enough for compile time to show.
func bigModule(n int) []byte {
	m := &wasmtest.Module{NoMemory: true}
	for i := range n {
		body := wasmtest.NewCode().LocalGet(0)
		for j := range 20 {
			body.I32(int32(i*31 + j)).I32Add()
		}
		m.Funcs = append(m.Funcs, wasmtest.Func{Params: []byte{wasmtest.I32}, Results: []byte{wasmtest.I32}, Body: body})
	}
	m.Funcs[0].Export = "f"
	return m.Encode()
}

// TestCacheLoadRestart goes through Load: a plugin loaded again after a restart (a new
// process's cache on the same directory) reuses the sealed entry.
func TestCacheLoadRestart(t *testing.T) {
	dir := t.TempDir()
	spec := testSpec("cache-restart", wasmtest.Hello())
	spec.CacheDir = dir
	load := func() *codeCache {
		forgetCache(dir)
		m, err := Load(spec, zerolog.Nop())
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := compilationCache(dir, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := load(); c.compiled.Load() != 1 {
		t.Fatalf("first load compiled %d, want 1", c.compiled.Load())
	}
	if c := load(); c.compiled.Load() != 0 || c.hits.Load() != 1 {
		t.Fatalf("load after restart: compiled %d, hits %d; want the entry reused", c.compiled.Load(), c.hits.Load())
	}
	forgetCache(dir)
}

// forgetCache drops the process-wide cache for dir, as a restart would.
func forgetCache(dir string) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := caches[dir]; ok {
		_ = c.wz.Close(context.Background())
		delete(caches, dir)
	}
}

func TestCacheDirectoryPermissions(t *testing.T) {
	if _, ok := fileOwner(mustStat(t, t.TempDir())); !ok {
		t.Skip("no Unix ownership on this system")
	}
	tests := []struct {
		name    string
		mode    os.FileMode // of the cache directory
		parent  os.FileMode // of its parent; 0 leaves it as created
		sub     os.FileMode // of wazero's directory in it; 0 leaves it
		wantErr string
	}{
		{name: "0700", mode: 0o700},
		{name: "0755", mode: 0o755},
		{name: "0750", mode: 0o750},
		{name: "0777", mode: 0o777, wantErr: "mode 0777"},
		{name: "0770", mode: 0o770, wantErr: "mode 0770"},
		{name: "0720 group write", mode: 0o720, wantErr: "mode 0720"},
		{name: "0702 world write", mode: 0o702, wantErr: "mode 0702"},
		{name: "parent 0777", mode: 0o700, parent: 0o777, wantErr: "others can write to"},
		{name: "parent 0775", mode: 0o700, parent: 0o775, wantErr: "others can write to"},
		{name: "parent sticky 1777", mode: 0o700, parent: 0o777 | os.ModeSticky},
		{name: "wazero's directory 0777", mode: 0o700, sub: 0o777, wantErr: "mode 0777"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "p")
			dir := filepath.Join(parent, "cache")
			if tt.sub != 0 {
				openTestCache(t, dir)
				subs, _ := filepath.Glob(filepath.Join(dir, wazeroSubdirPrefix+"*"))
				if len(subs) != 1 {
					t.Fatalf("wazero's directories: %v", subs)
				}
				chmod(t, subs[0], tt.sub)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			chmod(t, dir, tt.mode)
			if tt.parent != 0 {
				chmod(t, parent, tt.parent)
			}
			c, err := openCodeCache(dir, zerolog.Nop())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				_ = c.wz.Close(context.Background())
				return
			}
			if err == nil {
				_ = c.wz.Close(context.Background())
				t.Fatalf("open succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "plugin_cache_dir") {
				t.Errorf("error %q: want it to contain %q and say how to fix it", err, tt.wantErr)
			}
		})
	}
}

// TestCacheUnsafeDirectoryFailsLoad: the gateway fails to load a plugin (so a config that
// needs it fails to start or to reload) rather than running code from a directory others can
// write; fixing the directory and loading again works.
func TestCacheUnsafeDirectoryFailsLoad(t *testing.T) {
	if _, ok := fileOwner(mustStat(t, t.TempDir())); !ok {
		t.Skip("no Unix ownership on this system")
	}
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, dir, 0o777)
	spec := testSpec("cache-unsafe", wasmtest.Hello())
	spec.CacheDir = dir
	defer forgetCache(dir)
	if _, err := Load(spec, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("load from a 0777 cache directory: %v, want an error naming %s", err, dir)
	}
	chmod(t, dir, 0o700)
	m, err := Load(spec, zerolog.Nop())
	if err != nil {
		t.Fatalf("load after chmod 700: %v", err)
	}
	_ = m.Close()
	// A directory made unsafe while the gateway runs is noticed at the next load (a reload).
	chmod(t, dir, 0o777)
	if _, err := Load(spec, zerolog.Nop()); err == nil {
		t.Fatal("load after chmod 777 succeeded")
	}
}

func TestCacheDirectoryCreated0700(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "cache")
	openTestCache(t, dir)
	for _, p := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), dir} {
		if mode := mustStat(t, p).Mode().Perm(); mode != 0o700 {
			t.Errorf("%s created with mode %04o, want 0700", p, mode)
		}
	}
}

func TestCacheDirectorySymlink(t *testing.T) {
	if _, ok := fileOwner(mustStat(t, t.TempDir())); !ok {
		t.Skip("no Unix ownership on this system")
	}
	root := t.TempDir()
	target := filepath.Join(root, "target")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	// A symlinked directory is followed, and what it points to is checked.
	c := openTestCache(t, link)
	if c.dir != target {
		t.Errorf("cache uses %s, want the link's target %s", c.dir, target)
	}
	chmod(t, target, 0o777)
	if _, err := openCodeCache(link, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), target) {
		t.Errorf("open through a link to a 0777 directory: %v, want an error naming %s", err, target)
	}
}

func TestCacheKeyFile(t *testing.T) {
	dir := t.TempDir()
	openTestCache(t, dir)
	path := filepath.Join(dir, cacheKeyFile)
	info := mustStat(t, path)
	if _, ok := fileOwner(info); ok && info.Mode().Perm() != 0o600 {
		t.Errorf("key created with mode %04o, want 0600", info.Mode().Perm())
	}
	key, err := os.ReadFile(path)
	if err != nil || len(key) != cacheKeySize {
		t.Fatalf("key: %d bytes, %v", len(key), err)
	}
	if c := openTestCache(t, dir); !bytes.Equal(c.key, key) {
		t.Error("a restart made a new key")
	}

	// A key of the wrong size is replaced.
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := openTestCache(t, dir); len(c.key) != cacheKeySize || bytes.Equal(c.key, key) {
		t.Errorf("a short key was kept (%d bytes)", len(c.key))
	}

	if _, ok := fileOwner(info); !ok {
		return
	}
	unsafe := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr string
	}{
		{"0644", func(t *testing.T, path string) { chmod(t, path, 0o644) }, "mode 0644"},
		{"0640", func(t *testing.T, path string) { chmod(t, path, 0o640) }, "mode 0640"},
		{"0606", func(t *testing.T, path string) { chmod(t, path, 0o606) }, "mode 0606"},
		{"symlink", func(t *testing.T, path string) {
			other := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(other, make([]byte, cacheKeySize), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, path); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range unsafe {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			openTestCache(t, dir)
			path := filepath.Join(dir, cacheKeyFile)
			tt.prepare(t, path)
			if _, err := openCodeCache(dir, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("open with key %s: %v, want an error naming %s and containing %q", tt.name, err, path, tt.wantErr)
			}
		})
	}
}

// TestCacheOwnership: a directory or key owned by another user is refused. Changing owners
// needs root.
func TestCacheOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	for _, target := range []string{"", cacheKeyFile} {
		t.Run("other owner of "+map[string]string{"": "directory", cacheKeyFile: "key"}[target], func(t *testing.T) {
			dir := t.TempDir()
			openTestCache(t, dir)
			if err := os.Chown(filepath.Join(dir, target), 12345, 12345); err != nil {
				t.Fatal(err)
			}
			if _, err := openCodeCache(dir, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "uid 12345") {
				t.Errorf("open: %v, want an error naming uid 12345", err)
			}
		})
	}
}

// TestCacheCorruptSeal: a seal that does not parse or verify discards its entry and never
// stops the gateway.
func TestCacheCorruptSeal(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"extra line", func(b []byte) []byte { return append(b, "x\n"...) }},
		{"no final newline", func(b []byte) []byte { return b[:len(b)-1] }},
		{"upper-case hex", func(b []byte) []byte { return bytes.ToUpper(b) }},
		{"negative size", func(b []byte) []byte { return replaceLine(b, "size ", "size -1") }},
		{"size not a number", func(b []byte) []byte { return replaceLine(b, "size ", "size 1e3") }},
		{"other module", func(b []byte) []byte { return replaceLine(b, "module ", "module "+strings.Repeat("ab", 32)) }},
		{"mac zeroed", func(b []byte) []byte { return replaceLine(b, "mac ", "mac "+strings.Repeat("00", 32)) }},
		{"too large", func(b []byte) []byte { return append(b, bytes.Repeat([]byte{'x'}, maxSealSize)...) }},
		{"binary", func([]byte) []byte { return []byte{0, 0xff, '\n', 0} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			entryA := entryOf(t, dir, moduleA)
			raw, err := os.ReadFile(entryA + sealSuffix)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(entryA+sealSuffix, tt.mutate(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			c := openTestCache(t, dir)
			if c.rejected.Load() != 1 {
				t.Errorf("rejected %d at open, want 1", c.rejected.Load())
			}
			if got := runConst(t, c, moduleA); got != 1 {
				t.Fatalf("module A returned %d", got)
			}
		})
	}
	t.Run("seal is a directory", func(t *testing.T) {
		dir := t.TempDir()
		entryA := entryOf(t, dir, moduleA)
		if err := os.Remove(entryA + sealSuffix); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(entryA+sealSuffix, 0o700); err != nil {
			t.Fatal(err)
		}
		c := openTestCache(t, dir)
		if got := runConst(t, c, moduleA); got != 1 || c.rejected.Load() != 1 {
			t.Fatalf("module A returned %d, rejected %d", got, c.rejected.Load())
		}
	})
}

func replaceLine(b []byte, prefix, with string) []byte {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = with
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// FuzzCacheSeal: no seal file, however malformed, panics the parser, and whatever parses
// encodes back to the same bytes (so there is one spelling of every seal).
func FuzzCacheSeal(f *testing.F) {
	f.Add(seal{size: 42}.encode())
	f.Add([]byte(sealMagic + "\nmodule \nsha256 \nsize \nmac \n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSeal(b)
		if err != nil {
			return
		}
		if got := s.encode(); !bytes.Equal(got, b) {
			t.Fatalf("parsed %q, encodes as %q", b, got)
		}
	})
}

func mustStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	// Let t.TempDir's cleanup remove what the test made unwritable or odd.
	t.Cleanup(func() { _ = os.Chmod(path, 0o700) })
}
