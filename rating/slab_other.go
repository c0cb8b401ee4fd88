//go:build !unix

package rating

// offHeap falls back to the Go heap where anonymous mappings are not available.
func offHeap[T any](n int) ([]T, func()) { return make([]T, n), func() {} }
