//go:build unix

package rating

import (
	"syscall"
	"unsafe"
)

// offHeap returns a zeroed slice of n Ts in anonymous memory the Go heap does not manage,
// and its mapping, which returns it to the system. T must hold no Go pointers: the
// garbage collector does not look into this memory.
//
// Why: a State holds fixed-size, pointer-free records for every device of its partition.
// On the Go heap they would count towards the collector's target, which lets the heap grow
// to twice the live data (GOGC=100) before a cycle; off the heap, RSS is the devices
// themselves plus a small working heap. Pages are committed by the kernel on first touch.
//
// A slice of at least hugePage bytes starts on a hugePage boundary (the mapping is that
// much longer; the unused head is never touched, so never committed), so that
// mapping.adviseHuge can ask for huge pages over it.
func offHeap[T any](n int) ([]T, mapping) {
	var zero T
	size := int(unsafe.Sizeof(zero)) * n
	if size == 0 {
		return make([]T, n), mapping{}
	}
	pad := 0
	if size >= hugePage {
		pad = hugePage
	}
	mem, err := syscall.Mmap(-1, 0, size+pad, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or a sandbox refusing mmap: fall back to the heap.
		return make([]T, n), mapping{}
	}
	off := 0
	if pad > 0 {
		off = int(-uintptr(unsafe.Pointer(&mem[0])) & (hugePage - 1))
	}
	m := mapping{mem: mem, huge: mem[off : off+size]}
	return unsafe.Slice((*T)(unsafe.Pointer(&m.huge[0])), n), m
}

// mapping is one anonymous mapping of offHeap; the zero mapping is heap memory.
type mapping struct {
	mem  []byte // the whole mapping
	huge []byte // the part handed out
}

func (m mapping) free() {
	if m.mem != nil {
		_ = syscall.Munmap(m.mem)
	}
}

// adviseHuge asks the kernel to back the mapping with huge pages where it can (those
// pages not yet touched at once, the rest in the background). A State does this once it
// tracks many devices: each record then lands on a random device of a table and pages far
// larger than the processor's address translation cache covers in small pages, so nearly
// every record paid a page-table walk besides its cache misses. Small States keep small
// pages, so a partition with a handful of devices does not commit 2 MB at once.
func (m mapping) adviseHuge() {
	if len(m.huge) >= hugePage {
		adviseHuge(m.huge[:len(m.huge)&^(hugePage-1)])
	}
}

const hugePage = 2 << 20
