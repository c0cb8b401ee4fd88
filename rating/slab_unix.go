//go:build unix

package rating

import (
	"syscall"
	"unsafe"
)

// offHeap returns a zeroed slice of n Ts in anonymous memory the Go heap does not manage,
// and the function that returns it to the system. T must hold no Go pointers: the
// garbage collector does not look into this memory.
//
// Why: a State holds fixed-size, pointer-free records for every device of its partition.
// On the Go heap they would count towards the collector's target, which lets the heap grow
// to twice the live data (GOGC=100) before a cycle; off the heap, RSS is the devices
// themselves plus a small working heap. Pages are committed by the kernel on first touch.
func offHeap[T any](n int) ([]T, func()) {
	var zero T
	size := int(unsafe.Sizeof(zero)) * n
	if size == 0 {
		return make([]T, n), func() {}
	}
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or a sandbox refusing mmap: fall back to the heap.
		return make([]T, n), func() {}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[0])), n), func() { _ = syscall.Munmap(mem) }
}
