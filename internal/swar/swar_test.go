package swar

import (
	"encoding/binary"
	"testing"
)

// A masked word keeps exactly the first n bytes of the 8 it was read from.
func TestLowBytes(t *testing.T) {
	src := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	w := binary.LittleEndian.Uint64(src)
	for n := -1; n <= 9; n++ {
		var got [8]byte
		binary.LittleEndian.PutUint64(got[:], w&LowBytes(n))
		for i := range got {
			want := byte(0)
			if i < n {
				want = src[i]
			}
			if got[i] != want {
				t.Fatalf("n=%d: byte %d is %d, want %d", n, i, got[i], want)
			}
		}
	}
}
