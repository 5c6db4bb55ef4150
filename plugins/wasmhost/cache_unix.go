//go:build unix

package wasmhost

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the uid that owns a file, from its Stat or Lstat result.
func fileOwner(info fs.FileInfo) (int, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
