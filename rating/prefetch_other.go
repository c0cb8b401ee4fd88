//go:build !amd64 && !arm64

package rating

// prefetch does nothing where no prefetch instruction is wired up.
func prefetch(uintptr) {}
