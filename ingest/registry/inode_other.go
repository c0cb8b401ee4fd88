//go:build !unix

package registry

import "os"

func inode(os.FileInfo) any { return nil }
