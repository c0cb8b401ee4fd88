package cdr

import (
	"encoding/asn1"
	"encoding/binary"
	"runtime"
	"testing"

	"fleetmeter/record"
)

// The encoding/asn1 baseline: the CHFRecord as free5gc writes it, as Go structs for the
// standard library's reflection-driven decoder. It decodes the same fields (and must
// declare every field present, in order); it produces structs, not usage records.
type a1Record struct {
	RecordType int64         `asn1:"tag:0"`
	NFID       string        `asn1:"tag:1,ia5"`
	Subscriber a1Subscriber  `asn1:"tag:2"`
	Consumer   a1Consumer    `asn1:"tag:3"`
	Units      []a1MUU       `asn1:"tag:5"`
	Opening    []byte        `asn1:"tag:6"`
	Duration   int64         `asn1:"tag:7"`
	RecordSeq  int64         `asn1:"tag:8,optional"`
	Cause      int64         `asn1:"tag:9"`
	LocalSeq   int64         `asn1:"tag:11"`
	PDU        a1PDU         `asn1:"tag:13"`
	SessionID  []byte        `asn1:"tag:16"`
	ChargingID int64         `asn1:"tag:27"`
	Rest       asn1.RawValue `asn1:"optional"`
}

type a1Subscriber struct {
	Type asn1.Enumerated `asn1:"tag:0"`
	Data string          `asn1:"tag:1,utf8"`
}

type a1Consumer struct {
	Functionality asn1.Enumerated `asn1:"tag:0"`
	Name          string          `asn1:"tag:1,ia5"`
	Address       asn1.RawValue
	PLMN          []byte `asn1:"tag:3"`
}

type a1MUU struct {
	RatingGroup int64         `asn1:"tag:0"`
	Containers  []a1Container `asn1:"tag:1"`
	UPFID       string        `asn1:"tag:2,ia5,optional"`
}

type a1Container struct {
	Time     int64 `asn1:"tag:1,optional"`
	Total    int64 `asn1:"tag:4,optional"`
	Uplink   int64 `asn1:"tag:5,optional"`
	Downlink int64 `asn1:"tag:6,optional"`
	SSU      int64 `asn1:"tag:7,optional"`
	LocalSeq int64 `asn1:"tag:9,optional"`
}

type a1PDU struct {
	ChargingID int64           `asn1:"tag:0"`
	ULI        []byte          `asn1:"tag:3"`
	SessionID  int64           `asn1:"tag:6"`
	Slice      a1Slice         `asn1:"tag:7"`
	PDUType    asn1.Enumerated `asn1:"tag:8"`
	SSCMode    int64           `asn1:"tag:9"`
	SUPIPLMN   []byte          `asn1:"tag:10"`
	RATType    int64           `asn1:"tag:12"`
	DNN        string          `asn1:"tag:13,ia5"`
	PDUAddress asn1.RawValue
	UETimeZone []byte `asn1:"tag:16"`
	Start      []byte `asn1:"tag:17"`
	Stop       []byte `asn1:"tag:18,optional"`
	CC         []byte `asn1:"tag:20"`
}

type a1Slice struct {
	SST int64  `asn1:"tag:0"`
	SD  []byte `asn1:"tag:1"`
}

// decodeASN1 walks the TS 32.297 framing by hand and hands each CDR to encoding/asn1.
func decodeASN1(b []byte, into []a1Record) ([]a1Record, error) {
	off := int(binary.BigEndian.Uint32(b[4:]))
	for off < len(b) {
		n := int(binary.BigEndian.Uint16(b[off:]))
		hdr := 4
		if b[off+2]>>5 == 7 {
			hdr = 5
		}
		into = append(into, a1Record{})
		if _, err := asn1.UnmarshalWithParams(b[off+hdr:off+hdr+n], &into[len(into)-1], "tag:200"); err != nil {
			return into, err
		}
		off += hdr + n
	}
	return into, nil
}

func TestASN1Baseline(t *testing.T) {
	recs, err := decodeASN1(readTestdata(t, "chf_small_10.cdr"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var containers int
	var up int64
	for _, r := range recs {
		for _, m := range r.Units {
			for _, c := range m.Containers {
				containers++
				up += c.Uplink
			}
		}
	}
	if len(recs) != 10 || containers != 28 || up != 397808 {
		t.Fatalf("encoding/asn1 baseline read %d records, %d containers, uplink %d", len(recs), containers, up)
	}
}

// BenchmarkDecode decodes chf_small_10.cdr (10 CHFRecords, 28 usage records) with this
// package and with encoding/asn1. records/s is per core (one goroutine).
func BenchmarkDecode(b *testing.B) {
	in := readTestdata(b, "chf_small_10.cdr")
	const perOp = 28

	b.Run("impl=fleetmeter", func(b *testing.B) {
		d := goldenDecoder(b)
		var recs []record.Usage
		report := measure(b, len(in), perOp)
		for b.Loop() {
			var err error
			recs, err = d.Decode(in, recs[:0])
			if err != nil || len(recs) != perOp {
				b.Fatal(len(recs), err)
			}
		}
		report()
	})
	b.Run("impl=encoding_asn1", func(b *testing.B) {
		var recs []a1Record
		report := measure(b, len(in), perOp)
		for b.Loop() {
			var err error
			recs, err = decodeASN1(in, recs[:0])
			if err != nil || len(recs) != 10 {
				b.Fatal(len(recs), err)
			}
		}
		report()
	})
}

// measure sets up throughput metrics; call the returned func after the loop.
func measure(b *testing.B, size, records int) func() {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	return func() {
		runtime.ReadMemStats(&ms)
		n := float64(b.N * records)
		b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(ms.Mallocs-mallocs)/n, "allocs/record")
	}
}
