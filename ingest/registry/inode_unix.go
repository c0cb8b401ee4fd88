//go:build unix

package registry

import (
	"os"
	"syscall"
)

// inode identifies the file behind a path, so a rename over it (the atomic way to
// replace a file) is noticed even when size and modification time match.
func inode(fi os.FileInfo) any {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return nil
}
