package record

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
)

// same compares decoded records, a NaN equal to a NaN (a flipped byte makes some).
func same(a, b any) bool { return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) }

// takes reports whether the direct reader takes b (usage or rated) without arrow's reader.
func takes(b []byte, rated bool) bool {
	l := usageLayout
	if rated {
		l = ratedLayout
	}
	r := l.getReader()
	defer l.putReader(r)
	if !r.read(b) {
		return false
	}
	if rated {
		_, ok := r.rated(nil)
		return ok
	}
	_, ok := r.usage()
	return ok
}

// sameAsArrow checks that DecodeUsage and DecodeRated (the direct reader first) give what
// arrow's reader path gives for b: the same records, or both an error.
func sameAsArrow(t *testing.T, b []byte) {
	t.Helper()
	gu, errU := DecodeUsage(b, nil)
	wu, werrU := decodeUsageArrow(b, nil)
	if (errU == nil) != (werrU == nil) || (errU == nil && !same(gu, wu)) {
		t.Fatalf("usage: direct %v (%d records), arrow %v (%d records)", errU, len(gu), werrU, len(wu))
	}
	gr, errR := DecodeRated(b, nil)
	wr, werrR := decodeRatedArrow(b, nil)
	if (errR == nil) != (werrR == nil) || (errR == nil && !same(gr, wr)) {
		t.Fatalf("rated: direct %v (%d records), arrow %v (%d records)", errR, len(gr), werrR, len(wr))
	}
}

// The direct reader takes every stream of both writers (ours and arrow's, compressed and
// not) and reads the records arrow's reader reads; whatever it is given, flipped bytes and
// cut streams included, DecodeUsage and DecodeRated answer as arrow's path does.
func TestDirectReaderMatchesArrow(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var streams [][]byte
	for _, lz4 := range []bool{true, false} {
		ue, re := newUsageEncoder(lz4), newRatedEncoder(lz4)
		for _, n := range []int{1, 2, 7, 23, 24, 40, 300} {
			recs, rated := randomUsage(rng, n), randomRated(rng, n)
			for k, enc := range []func() ([]byte, error){
				func() ([]byte, error) { return ue.Encode(nil, recs) },
				func() ([]byte, error) { return ue.encodeArrow(nil, recs) },
				func() ([]byte, error) { return re.Encode(nil, rated) },
				func() ([]byte, error) { return re.encodeArrow(nil, rated) },
			} {
				b, err := enc()
				if err != nil {
					t.Fatal(err)
				}
				if !takes(b, k >= 2) {
					t.Fatalf("lz4 %v, %d rows, encoder %d: the direct reader refused the stream", lz4, n, k)
				}
				sameAsArrow(t, b)
				if k < 2 {
					if got, _ := DecodeUsage(b, nil); !reflect.DeepEqual(got, recs) {
						t.Fatalf("lz4 %v, %d rows, encoder %d: usage decoded differently", lz4, n, k)
					}
				} else if got, _ := DecodeRated(b, nil); !reflect.DeepEqual(got, rated) {
					t.Fatalf("lz4 %v, %d rows, encoder %d: rated decoded differently", lz4, n, k)
				}
				if n == 1 || n == 24 {
					streams = append(streams, b)
				}
			}
		}
	}
	// Random bytes flipped and random cuts (FuzzDirectReaderMatchesArrow goes further).
	buf := make([]byte, 0, 1<<16)
	for k, s := range streams {
		for range 40 {
			i, x := rng.IntN(len(s)), byte(1+rng.IntN(255))
			buf = append(buf[:0], s...)
			buf[i] ^= x
			sameAsArrow(t, buf)
			if t.Failed() {
				t.Fatalf("stream %d (%d bytes), byte %d xor %#x", k, len(s), i, x)
			}
		}
		for range 10 {
			sameAsArrow(t, s[:rng.IntN(len(s))])
		}
	}
}

func FuzzDirectReaderMatchesArrow(f *testing.F) {
	for _, lz4 := range []bool{true, false} {
		for _, n := range []int{1, 30} {
			b, err := newUsageEncoder(lz4).Encode(nil, manyUsage(n))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			if b, err = newRatedEncoder(lz4).Encode(nil, manyRated(n)); err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameAsArrow(t, b) })
}

// A message length far beyond the stream, at any position, costs neither path more than
// the stream's size in allocations: arrow's path once made the length it read (2 GiB)
// before finding the stream too short.
func TestArrowPathBoundsMessageLengths(t *testing.T) {
	for _, rated := range []bool{false, true} {
		var b []byte
		var err error
		if rated {
			b, err = newRatedEncoder(true).Encode(nil, manyRated(30))
		} else {
			b, err = newUsageEncoder(true).Encode(nil, manyUsage(30))
		}
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(b))
		var worst uint64
		for i := 0; i+4 <= len(b); i += 4 {
			copy(buf, b)
			binary.LittleEndian.PutUint32(buf[i:], 0x7fffffff)
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			if rated {
				_, _ = DecodeRated(buf, nil)
			} else {
				_, _ = DecodeUsage(buf, nil)
			}
			runtime.ReadMemStats(&m1)
			worst = max(worst, m1.TotalAlloc-m0.TotalAlloc)
		}
		// The bounded allocator's budget is 256 bytes per input byte plus 64 KiB (1.7 MiB
		// here); TotalAlloc also counts what tests running beside this one allocate, and
		// -race adds its own, so the bound is loose: the make this guards against was 2 GiB.
		if limit := uint64(64 << 20); worst > limit {
			t.Fatalf("rated %v: a stream of %d bytes allocated %d bytes (limit %d)", rated, len(b), worst, limit)
		}
	}
}
