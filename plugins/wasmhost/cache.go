package wasmhost

// The compilation cache on disk holds native machine code that the gateway maps executable and
// runs. wazero checks its entries with a CRC32 only, which catches a torn write but not a
// replaced file, so Weir seals every entry it lets wazero write and verifies the seal before
// wazero may read it. RATIONALE.md ("Plugin compilation cache") says what this does and does
// not defend against.
//
// Layout of a cache directory:
//
//	<dir>/                                  0700, owned by the gateway's user (checked)
//	<dir>/weir-cache.key                    32 random bytes, 0600: this installation's MAC key
//	<dir>/wazero-<version>-<arch>-<os>/     wazero's own directory
//	    <64 hex>                            an entry, named by wazero from the module's hash
//	    <64 hex>.seal                       Weir's seal of that entry

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"github.com/tetratelabs/wazero"
)

const (
	cacheKeyFile = "weir-cache.key"
	cacheKeySize = 32
	sealSuffix   = ".seal"
	sealMagic    = "weir-wasm-cache-seal-v1"
	// maxSealSize bounds how much of a seal file is read: a valid one is about 250 bytes.
	maxSealSize = 1024
	// wazeroSubdirPrefix starts the name of the directory wazero keeps its entries in, one per
	// wazero version, architecture and OS.
	wazeroSubdirPrefix = "wazero-"
)

// codeCache is a compilation cache: in memory only, or backed by a directory whose entries
// are sealed with an HMAC-SHA256 under a per-installation key.
type codeCache struct {
	// dir is the resolved cache directory; "" means memory only.
	dir string
	wz  wazero.CompilationCache
	key []byte

	// mu serialises compiles into one directory, so that an entry wazero writes during a
	// compile can be attributed to the module being compiled, and guards known.
	mu sync.Mutex
	// known holds the entries verified or sealed so far, by path, with the file as it was
	// then, so an unchanged entry is not hashed again before every compile.
	known map[string]knownEntry

	// hits counts compiles that wrote no entry (served from a verified entry or from memory);
	// compiled those that wrote one; rejected the entries discarded for a failed check.
	hits, compiled, rejected atomic.Int64
}

type knownEntry struct {
	module [sha256.Size]byte
	info   fs.FileInfo
}

var (
	cacheMu sync.Mutex
	caches  = map[string]*codeCache{}
)

// compilationCache returns the process-wide cache for a configured directory (see CacheDir),
// so every plugin compiled with the same setting shares compiled code in memory, and a
// restart with a warm directory does not recompile. A directory that is unsafe to load code
// from is an error, never a silent fallback: see openCodeCache.
func compilationCache(dir string, log zerolog.Logger) (*codeCache, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := caches[dir]; ok {
		return c, nil
	}
	c, err := openCodeCache(CacheDir(dir), log)
	if err != nil {
		// Not remembered: fixing the directory and reloading tries again.
		return nil, err
	}
	caches[dir] = c
	return c, nil
}

// memoryCache returns the process-wide in-memory cache (the "off" setting), which never fails.
func memoryCache() wazero.CompilationCache {
	c, _ := compilationCache("off", zerolog.Nop())
	return c.wz
}

// CacheDir resolves a configured cache directory: "" is <user cache dir>/weir/wasm, "off" is
// none (""), anything else is used as is. Without a user cache directory (no $HOME, for
// example) the default is none as well.
func CacheDir(dir string) string {
	switch dir {
	case "off":
		return ""
	case "":
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(base, "weir", "wasm")
	}
	return dir
}

// openCodeCache opens the cache in dir ("" for memory only). It creates the directory (and
// any missing parents) 0700, refuses a directory that another user could write to, loads or
// creates the installation's key, and discards every entry whose seal does not verify.
func openCodeCache(dir string, log zerolog.Logger) (*codeCache, error) {
	if dir == "" {
		return &codeCache{wz: wazero.NewCompilationCache()}, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin cache directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create plugin cache directory: %w", err)
	}
	// The configured path may be a symlink (to a volume, say); what is checked and used is
	// the directory it points to. Nothing inside it may be a symlink.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("resolve plugin cache directory %s: %w", abs, err)
	}
	if err := checkCacheDir(real); err != nil {
		return nil, err
	}
	key, err := loadCacheKey(real)
	if err != nil {
		return nil, err
	}
	wz, err := wazero.NewCompilationCacheWithDir(real)
	if err != nil {
		return nil, fmt.Errorf("open plugin cache directory %s: %w", real, err)
	}
	c := &codeCache{dir: real, wz: wz, key: key, known: map[string]knownEntry{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.verifyAll([sha256.Size]byte{}, log); err != nil {
		_ = wz.Close(context.Background())
		return nil, err
	}
	return c, nil
}

// compile compiles wasm on rt, whose config uses c.wz. Before wazero may read an entry, every
// entry in the directory that is new, changed, or belongs to this module is verified (and
// discarded when it fails); an entry wazero writes during the compile is then sealed.
func (c *codeCache) compile(ctx context.Context, rt wazero.Runtime, wasm []byte, log zerolog.Logger) (wazero.CompiledModule, error) {
	if c.dir == "" {
		return rt.CompileModule(ctx, wasm)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Permissions are checked again: a directory opened earlier in this process may have
	// been changed since, and a reload is the moment to notice.
	if err := checkCacheDir(c.dir); err != nil {
		return nil, err
	}
	module := sha256.Sum256(wasm)
	before, err := c.verifyAll(module, log)
	if err != nil {
		return nil, err
	}
	code, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, err
	}
	after, err := listEntries(c.dir)
	if err != nil {
		return code, nil // compiled; the unsealed entry is discarded at the next start
	}
	wrote := false
	for path, info := range after {
		if old, ok := before[path]; ok && sameFile(old, info) {
			continue
		}
		wrote = true
		if err := c.seal(path, module); err != nil {
			// The module compiled, so the load goes on; an entry left unsealed would be
			// discarded later anyway, so it goes now.
			log.Warn().Err(err).Str("entry", path).Msg("plugin compilation cache: could not seal a new entry; removing it")
			_ = os.Remove(path)
			delete(c.known, path)
		}
	}
	if wrote {
		c.compiled.Add(1)
	} else {
		c.hits.Add(1)
	}
	return code, nil
}

// verifyAll checks every entry in the cache that has not been verified in its current state,
// plus those sealed for module, removes those that fail and seals without an entry, and
// returns the entries that remain. The caller holds c.mu.
func (c *codeCache) verifyAll(module [sha256.Size]byte, log zerolog.Logger) (map[string]fs.FileInfo, error) {
	entries, err := listEntries(c.dir)
	if err != nil {
		return nil, err
	}
	for path := range c.known {
		if _, ok := entries[path]; !ok {
			delete(c.known, path)
		}
	}
	for path, info := range entries {
		if k, ok := c.known[path]; ok && k.module != module && sameFile(k.info, info) {
			continue
		}
		sealed, err := c.verify(path, info)
		if err == nil {
			c.known[path] = knownEntry{module: sealed, info: info}
			continue
		}
		c.rejected.Add(1)
		delete(c.known, path)
		delete(entries, path)
		log.Warn().Err(err).Str("entry", path).Msg("plugin compilation cache: discarding an entry that failed its integrity check; its module will be recompiled")
		if err := removeEntry(path); err != nil {
			// wazero would read the entry: refuse to compile rather than run it.
			return nil, fmt.Errorf("remove unverified plugin cache entry: %w", err)
		}
	}
	return entries, nil
}

// verify checks path's seal: its MAC under c.key, and that the entry's size and SHA-256 are
// the sealed ones. It returns the module the entry was sealed for.
func (c *codeCache) verify(path string, info fs.FileInfo) ([sha256.Size]byte, error) {
	var none [sha256.Size]byte
	if !info.Mode().IsRegular() {
		return none, fmt.Errorf("not a regular file (%s)", info.Mode().Type())
	}
	raw, err := readSeal(path + sealSuffix)
	if err != nil {
		return none, err
	}
	s, err := parseSeal(raw)
	if err != nil {
		return none, fmt.Errorf("seal %s: %w", path+sealSuffix, err)
	}
	if !hmac.Equal(s.mac[:], c.mac(path, s.module, s.content, s.size)) {
		return none, errors.New("seal does not verify under this installation's key (copied from elsewhere, or altered)")
	}
	size, content, err := hashFile(path)
	if err != nil {
		return none, err
	}
	if size != s.size || content != s.content {
		return none, errors.New("entry differs from the code that was sealed (replaced or altered)")
	}
	return s.module, nil
}

// seal writes path's seal binding the entry's name, size and SHA-256 to module, and
// remembers the entry as verified. The caller holds c.mu.
func (c *codeCache) seal(path string, module [sha256.Size]byte) error {
	info, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("stat new entry: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("new entry is not a regular file (%s)", info.Mode().Type())
	}
	size, content, err := hashFile(path)
	if err != nil {
		return err
	}
	s := seal{module: module, content: content, size: size}
	copy(s.mac[:], c.mac(path, module, content, size))
	if err := writeFileAtomic(path+sealSuffix, s.encode()); err != nil {
		return fmt.Errorf("write seal: %w", err)
	}
	// The entry is remembered as it was hashed; if it changed in between, the next compile
	// sees a different file and verifies it again.
	c.known[path] = knownEntry{module: module, info: info}
	return nil
}

// mac is the HMAC-SHA256 of an entry's identity: wazero's directory and entry names (the name
// is wazero's key, derived from the module's hash, so an entry cannot be moved to another
// module's name), the module it was sealed for, and the entry's size and SHA-256.
func (c *codeCache) mac(path string, module, content [sha256.Size]byte, size int64) []byte {
	h := hmac.New(sha256.New, c.key)
	field := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(sealMagic))
	field([]byte(filepath.Base(filepath.Dir(path))))
	field([]byte(filepath.Base(path)))
	field(module[:])
	field(content[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(size))
	field(n[:])
	return h.Sum(nil)
}

// seal is the content of a .seal file.
type seal struct {
	module, content [sha256.Size]byte
	size            int64
	mac             [sha256.Size]byte
}

// encode writes the seal as text, so an operator can read which module an entry holds.
func (s seal) encode() []byte {
	return fmt.Appendf(nil, "%s\nmodule %x\nsha256 %x\nsize %d\nmac %x\n", sealMagic, s.module, s.content, s.size, s.mac)
}

// parseSeal reads what encode wrote, and nothing else.
func parseSeal(b []byte) (seal, error) {
	var s seal
	lines := strings.Split(string(b), "\n")
	if len(lines) != 6 || lines[5] != "" || lines[0] != sealMagic {
		return s, errors.New("not a seal this version writes")
	}
	field := func(line, name string) (string, error) {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			return "", fmt.Errorf("want a %q line", name)
		}
		return v, nil
	}
	hash := func(line, name string, dst *[sha256.Size]byte) error {
		v, err := field(line, name)
		if err != nil {
			return err
		}
		// Lower case only, as encode writes it: one spelling per seal.
		if !isEntryName(v) {
			return fmt.Errorf("%s: want %d lower-case hex digits", name, 2*sha256.Size)
		}
		if _, err := hex.Decode(dst[:], []byte(v)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := hash(lines[1], "module", &s.module); err != nil {
		return s, err
	}
	if err := hash(lines[2], "sha256", &s.content); err != nil {
		return s, err
	}
	v, err := field(lines[3], "size")
	if err != nil {
		return s, err
	}
	if s.size, err = strconv.ParseInt(v, 10, 64); err != nil || s.size < 0 || strconv.FormatInt(s.size, 10) != v {
		return s, fmt.Errorf("size: bad number %q", v)
	}
	if err := hash(lines[4], "mac", &s.mac); err != nil {
		return s, err
	}
	return s, nil
}

// readSeal reads a seal file that must be a small regular file.
func readSeal(path string) ([]byte, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("entry has no seal (not written by this installation)")
	}
	if err != nil {
		return nil, fmt.Errorf("read seal: %w", err)
	}
	if !info.Mode().IsRegular() || info.Size() > maxSealSize {
		return nil, fmt.Errorf("seal %s is not a small regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read seal: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSealSize+1))
	if err != nil {
		return nil, fmt.Errorf("read seal: %w", err)
	}
	return b, nil
}

// hashFile returns the size and SHA-256 of a file's content.
func hashFile(path string) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return 0, sum, fmt.Errorf("read entry: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, sum, fmt.Errorf("read entry: %w", err)
	}
	h.Sum(sum[:0])
	return n, sum, nil
}

// listEntries returns every file in wazero's directories of dir whose name wazero could look
// up (64 hex digits), with its Lstat information. Seals without their entry are removed on
// the way; wazero's temporary files and anything else are left alone, as wazero never reads
// them.
func listEntries(dir string) (map[string]fs.FileInfo, error) {
	subs, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list plugin cache directory: %w", err)
	}
	out := map[string]fs.FileInfo{}
	for _, sub := range subs {
		if !strings.HasPrefix(sub.Name(), wazeroSubdirPrefix) {
			continue
		}
		subPath := filepath.Join(dir, sub.Name())
		if sub.Type()&fs.ModeSymlink != 0 {
			// wazero would follow it to code stored anywhere: not Weir's directory.
			if err := os.Remove(subPath); err != nil {
				return nil, fmt.Errorf("remove symlink in plugin cache directory: %w", err)
			}
			continue
		}
		if !sub.IsDir() {
			continue
		}
		info, err := sub.Info()
		if err != nil {
			return nil, fmt.Errorf("stat plugin cache directory: %w", err)
		}
		if err := checkPrivate(subPath, info, "plugin cache directory"); err != nil {
			return nil, err
		}
		files, err := os.ReadDir(subPath)
		if err != nil {
			return nil, fmt.Errorf("list plugin cache directory: %w", err)
		}
		names := map[string]bool{}
		for _, f := range files {
			names[f.Name()] = true
		}
		for _, f := range files {
			name := f.Name()
			if entry, ok := strings.CutSuffix(name, sealSuffix); ok && isEntryName(entry) {
				if !names[entry] {
					_ = os.Remove(filepath.Join(subPath, name))
				}
				continue
			}
			if !isEntryName(name) {
				continue
			}
			info, err := f.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("stat plugin cache entry: %w", err)
			}
			out[filepath.Join(subPath, name)] = info
		}
	}
	return out, nil
}

// isEntryName reports whether name is one wazero gives an entry: a SHA-256 in lower-case hex.
func isEntryName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// removeEntry removes an entry and its seal.
func removeEntry(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(path + sealSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// sameFile reports whether two Lstat results describe the same, unmodified file.
func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && a.Mode() == b.Mode()
}

// writeFileAtomic writes b to path through a temporary file in the same directory (created
// 0600) and a rename, so a reader never sees half a file.
func writeFileAtomic(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// loadCacheKey returns the installation's MAC key from dir, creating it (32 random bytes,
// 0600) when absent. A key file that another user could read or write is refused: whoever
// reads it can seal code the gateway will run. One of the wrong size is replaced, which only
// makes every entry fail its check and be recompiled.
func loadCacheKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, cacheKeyFile)
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newCacheKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read plugin cache key: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("plugin cache key %s is not a regular file (%s); remove it and Weir creates a new one", path, info.Mode().Type())
	}
	if err := checkPrivate(path, info, "plugin cache key"); err != nil {
		return nil, err
	}
	key, err := readKeyFile(path, info)
	if err != nil {
		return nil, err
	}
	if len(key) != cacheKeySize {
		return newCacheKey(path)
	}
	return key, nil
}

// readKeyFile reads the key file checked as info (closing it before a replacement may be
// written over it).
func readKeyFile(path string, info fs.FileInfo) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read plugin cache key: %w", err)
	}
	defer f.Close()
	// The file opened must be the one checked, not one swapped in meanwhile.
	if opened, err := f.Stat(); err != nil || !os.SameFile(info, opened) {
		return nil, fmt.Errorf("plugin cache key %s changed while it was read", path)
	}
	key, err := io.ReadAll(io.LimitReader(f, cacheKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("read plugin cache key: %w", err)
	}
	return key, nil
}

// newCacheKey writes a fresh random key to path.
func newCacheKey(path string) ([]byte, error) {
	key := make([]byte, cacheKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create plugin cache key: %w", err)
	}
	if err := writeFileAtomic(path, key); err != nil {
		return nil, fmt.Errorf("create plugin cache key: %w", err)
	}
	return key, nil
}

// checkCacheDir refuses a cache directory that someone other than the gateway's user (or
// root) could write to or replace: the directory itself must be owned by the gateway's user
// and writable by nobody else, and each parent must be owned by that user or root and not
// writable by others unless it is sticky (as /tmp is), since whoever can rename the directory
// can substitute their own.
func checkCacheDir(dir string) error {
	info, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("plugin cache directory: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("plugin cache directory %s is not a directory", dir)
	}
	if err := checkPrivate(dir, info, "plugin cache directory"); err != nil {
		return err
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("plugin cache directory: %w", err)
		}
		uid, ok := fileOwner(info)
		if !ok {
			return nil
		}
		if uid != 0 && uid != os.Geteuid() {
			return fmt.Errorf("plugin cache directory %s is inside %s, which is owned by uid %d, who could replace it; use a directory whose parents belong to root or to the gateway's user, or set server.plugin_cache_dir to off", dir, p, uid)
		}
		if info.Mode().Perm()&0o022 != 0 && info.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("plugin cache directory %s is inside %s (mode %04o), which others can write to and so replace it; remove group and world write from %s (chmod go-w), or set server.plugin_cache_dir elsewhere or to off", dir, p, info.Mode().Perm(), p)
		}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

// checkPrivate refuses a file or directory that is not owned by the gateway's user, or that
// others may write to (a directory) or access at all (the key file). On systems without Unix
// ownership (Windows) it checks nothing: access there is governed by ACLs.
func checkPrivate(path string, info fs.FileInfo, what string) error {
	uid, ok := fileOwner(info)
	if !ok {
		return nil
	}
	if uid != os.Geteuid() {
		return fmt.Errorf("%s %s is owned by uid %d, not by the gateway's user (uid %d); chown it, or set server.plugin_cache_dir to another directory or to off", what, path, uid, os.Geteuid())
	}
	mode := info.Mode().Perm()
	if info.IsDir() {
		if mode&0o022 != 0 {
			return fmt.Errorf("%s %s has mode %04o: others can write native code the gateway runs; chmod 700 %s, or set server.plugin_cache_dir to another directory or to off", what, path, mode, path)
		}
		return nil
	}
	if mode&0o077 != 0 {
		return fmt.Errorf("%s %s has mode %04o: others could forge cache entries with it; chmod 600 %s (or remove it and every entry is recompiled)", what, path, mode, path)
	}
	return nil
}
