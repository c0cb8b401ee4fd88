package billing

import (
	"math/bits"
	"sync"
	"unsafe"
)

// reuseAllocator is the memory of the Parquet exports (parquetMem, one for the process):
// arrow-go's writer takes a new buffer for every data page and column chunk it builds and
// gives it back when the page is written, and its Go allocator leaves every one to the
// garbage collector (a writer of 200,000 rows allocated 85 MB; clearing, page faults and
// collection were a fifth of the write). Buffers given back are kept by size class (powers
// of two) and handed out again, cleared as a new one would be, so a writer sees the memory
// it would have got. At most keepBytes are kept; the rest is left to the collector.
type reuseAllocator struct {
	mu   sync.Mutex
	free [48][][]byte // by class: cap == 1<<class, 64-byte aligned
	kept int
}

const (
	allocAlign = 64
	keepBytes  = 64 << 20 // a writer of a million rows gives back about 12 MB
)

func classOf(size int) int {
	if size <= allocAlign {
		return bits.Len(allocAlign - 1)
	}
	return bits.Len(uint(size - 1))
}

func (a *reuseAllocator) Allocate(size int) []byte {
	c := classOf(size)
	a.mu.Lock()
	if n := len(a.free[c]); n > 0 {
		b := a.free[c][n-1]
		a.free[c] = a.free[c][:n-1]
		a.kept -= cap(b)
		a.mu.Unlock()
		clear(b[:cap(b)])
		return b[:size]
	}
	a.mu.Unlock()
	buf := make([]byte, 1<<c+allocAlign)
	shift := int(-uintptr(unsafe.Pointer(unsafe.SliceData(buf))) & (allocAlign - 1))
	return buf[shift : shift+size : shift+1<<c]
}

// Reallocate grows b in place within its class, else moves it to a new buffer. The old
// one is left to the collector, not kept: a slice of it taken before the move (arrow-go's
// Go allocator lets that stand) must not see another writer's bytes.
func (a *reuseAllocator) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size {
		return b[:size]
	}
	nb := a.Allocate(size)
	copy(nb, b)
	return nb
}

// Free keeps b for reuse if it is one of this allocator's (a power-of-two capacity, aligned)
// and there is room.
func (a *reuseAllocator) Free(b []byte) {
	c := cap(b)
	if c < allocAlign || c&(c-1) != 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))&(allocAlign-1) != 0 {
		return
	}
	a.mu.Lock()
	if a.kept+c <= keepBytes {
		k := bits.Len(uint(c - 1))
		a.free[k] = append(a.free[k], b[:0:c])
		a.kept += c
	}
	a.mu.Unlock()
}
