package billing

import (
	"testing"
	"unsafe"
)

// TestReuseAllocator: a buffer given back is handed out again for a size of its class,
// cleared over its whole capacity and 64-byte aligned; growing in place keeps the bytes,
// and a buffer grown by moving is not handed out again;
// a buffer not of the allocator's shape is not kept; and no more than keepBytes are kept.
func TestReuseAllocator(t *testing.T) {
	var a reuseAllocator
	aligned := func(b []byte) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(b)))%allocAlign == 0 }
	b := a.Allocate(1000)
	if len(b) != 1000 || cap(b) != 1024 || !aligned(b) {
		t.Fatalf("Allocate(1000): len %d cap %d aligned %v", len(b), cap(b), aligned(b))
	}
	for i := range b[:cap(b)] {
		b[:cap(b)][i] = 0xff
	}
	a.Free(b)
	c := a.Allocate(600)
	if unsafe.SliceData(c) != unsafe.SliceData(b) || len(c) != 600 {
		t.Fatalf("Allocate(600) after Free of a 1 KiB buffer: a new buffer (len %d), want the freed one", len(c))
	}
	for i, v := range c[:cap(c)] {
		if v != 0 {
			t.Fatalf("reused buffer byte %d is %#x, want 0", i, v)
		}
	}
	c[599] = 7
	g := a.Reallocate(1024, c)
	if unsafe.SliceData(g) != unsafe.SliceData(c) || len(g) != 1024 || g[599] != 7 {
		t.Fatalf("Reallocate within capacity moved or lost bytes")
	}
	h := a.Reallocate(5000, g)
	if len(h) != 5000 || h[599] != 7 || !aligned(h) {
		t.Fatalf("Reallocate(5000): len %d, byte 599 = %d, aligned %v", len(h), h[599], aligned(h))
	}
	if d := a.Allocate(1024); unsafe.SliceData(d) == unsafe.SliceData(g) || g[599] != 7 {
		t.Fatalf("the buffer Reallocate moved from was handed out again while a slice of it may still be read")
	}
	a.Free(make([]byte, 1000)) // not a power-of-two capacity: not the allocator's
	a.Free(h[1:2:3])
	if a.kept != 0 {
		t.Fatalf("kept %d bytes after freeing slices the allocator did not hand out", a.kept)
	}
	var big [][]byte
	for range keepBytes/(64<<20) + 2 {
		big = append(big, a.Allocate(64<<20))
	}
	for _, x := range big {
		a.Free(x)
	}
	if a.kept > keepBytes {
		t.Fatalf("kept %d bytes, more than %d", a.kept, keepBytes)
	}
}
