package cdr

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"fleetmeter/record"
)

// FuzzDecode checks the decoder's invariants on any input: it never panics, consumes no
// more than it was given, reports damage as a *DecodeError inside the input, and the
// records of any prefix are a prefix of the records of the whole input (the valid part
// decodes the same however much follows it).
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "chf_*"))
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*", "input.cdr"))
	for _, p := range append(seeds, golden...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d := goldenDecoder(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		full, err := d.Decode(b, nil)
		consumed := d.Consumed()
		if consumed < 0 || consumed > len(b) {
			t.Fatalf("consumed %d of %d bytes", consumed, len(b))
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			if de.Offset < int64(consumed) || de.Offset > int64(len(b)) {
				t.Fatalf("error offset %d outside [%d, %d]: %v", de.Offset, consumed, len(b), err)
			}
		}
		for _, k := range []int{consumed, consumed / 2, len(b) / 2, len(b) - 1} {
			if k < 0 || k > len(b) {
				continue
			}
			part, _ := d.Decode(b[:k], nil)
			if !isPrefix(part, full) {
				t.Fatalf("records of the first %d bytes are not a prefix of the full input's (%d vs %d records)", k, len(part), len(full))
			}
			if k == consumed && len(part) != len(full) {
				t.Fatalf("the %d consumed bytes give %d records, the whole input %d", k, len(part), len(full))
			}
		}
	})
}

func isPrefix(part, full []record.Usage) bool {
	if len(part) > len(full) {
		return false
	}
	for i := range part {
		if part[i] != full[i] {
			return false
		}
	}
	return true
}

// FuzzLocation: where the template fast path reads a ULI, the JSON walk reads it too,
// to the same six values.
func FuzzLocation(f *testing.F) {
	for _, s := range []string{
		`{"nrLocation":{"tai":{"plmnId":{"mcc":"208","mnc":"93"},"tac":"000007"},"ncgi":{"plmnId":{"mcc":"208","mnc":"93"},"nrCellId":"000000016"}}}`,
		`{"eutraLocation":{"tai":{"plmnId":{"mcc":"208","mnc":"93"},"tac":"000008"},"ecgi":{"plmnId":{"mcc":"208","mnc":"93"},"eutraCellId":"0000107"}}}`,
		`{"nrLocation":{"tai":{"plmnId":{"mcc":"","mnc":"93"},"tac":"0"},"ncgi":{"plmnId":{"mcc":"2\"8","mnc":"93"},"nrCellId":"x"}}}`,
		`{"nrLocation":{"tai":{"plmnId":{"mcc":"208","mnc":"93"},"tac":"000007"},"ncgi":{"plmnId":{"mcc":"208","mnc":"93"},"nrCellId":"000000016"}}} `,
	} {
		f.Add([]byte(s))
	}
	same := func(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, walk location
		if !templateLocation(b, &fast) {
			return
		}
		if !walkLocation(b, &walk) {
			t.Fatalf("template read %q, the walk refuses it", b)
		}
		if !same(fast.taiMCC, walk.taiMCC) || !same(fast.taiMNC, walk.taiMNC) || !same(fast.tac, walk.tac) ||
			!same(fast.cgiMCC, walk.cgiMCC) || !same(fast.cgiMNC, walk.cgiMNC) || !same(fast.cellID, walk.cellID) {
			t.Fatalf("%q: template %+q, walk %+q", b, fast, walk)
		}
	})
}
