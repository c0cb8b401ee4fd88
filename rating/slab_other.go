//go:build !unix

package rating

// offHeap falls back to the Go heap where anonymous mappings are not available.
func offHeap[T any](n int) ([]T, mapping) { return make([]T, n), mapping{} }

type mapping struct{}

func (mapping) free()       {}
func (mapping) adviseHuge() {}
