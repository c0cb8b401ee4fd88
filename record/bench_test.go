package record

import (
	"fmt"
	"testing"
)

// Run: go test -run '^$' -bench . -benchmem ./record/
// Names are key=value so benchstat can split them.

var benchRows = []int{1, 6, 100, 1000, 10_000} // 6: a CoAP or MQTT collector's message under load

func reportRows(b *testing.B, rows, bytes int) {
	b.ReportMetric(float64(b.N)*float64(rows)/b.Elapsed().Seconds(), "records/s")
	if bytes > 0 {
		b.ReportMetric(float64(bytes)/float64(rows), "bytes/record")
	}
}

func BenchmarkUsageEncode(b *testing.B) {
	for _, lz4 := range []bool{true, false} {
		for _, rows := range benchRows {
			b.Run(fmt.Sprintf("lz4=%t/rows=%d", lz4, rows), func(b *testing.B) {
				recs := manyUsage(rows)
				enc := newUsageEncoder(lz4)
				var buf []byte
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if buf, err = enc.Encode(buf[:0], recs); err != nil {
						b.Fatal(err)
					}
				}
				reportRows(b, rows, len(buf))
			})
		}
	}
}

func BenchmarkUsageDecode(b *testing.B) {
	for _, lz4 := range []bool{true, false} {
		for _, rows := range benchRows {
			b.Run(fmt.Sprintf("lz4=%t/rows=%d", lz4, rows), func(b *testing.B) {
				buf, err := newUsageEncoder(lz4).Encode(nil, manyUsage(rows))
				if err != nil {
					b.Fatal(err)
				}
				var into []Usage
				b.ReportAllocs()
				for b.Loop() {
					if into, err = DecodeUsage(buf, into[:0]); err != nil {
						b.Fatal(err)
					}
				}
				reportRows(b, rows, len(buf))
			})
		}
	}
}

func BenchmarkRatedEncode(b *testing.B) {
	for _, lz4 := range []bool{true, false} {
		for _, rows := range benchRows {
			b.Run(fmt.Sprintf("lz4=%t/rows=%d", lz4, rows), func(b *testing.B) {
				recs := manyRated(rows)
				enc := newRatedEncoder(lz4)
				var buf []byte
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if buf, err = enc.Encode(buf[:0], recs); err != nil {
						b.Fatal(err)
					}
				}
				reportRows(b, rows, len(buf))
			})
		}
	}
}

func BenchmarkRatedDecode(b *testing.B) {
	for _, lz4 := range []bool{true, false} {
		for _, rows := range benchRows {
			b.Run(fmt.Sprintf("lz4=%t/rows=%d", lz4, rows), func(b *testing.B) {
				buf, err := newRatedEncoder(lz4).Encode(nil, manyRated(rows))
				if err != nil {
					b.Fatal(err)
				}
				var into []Rated
				b.ReportAllocs()
				for b.Loop() {
					if into, err = DecodeRated(buf, into[:0]); err != nil {
						b.Fatal(err)
					}
				}
				reportRows(b, rows, len(buf))
			})
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	for _, kind := range []string{"usage", "rated"} {
		b.Run("record="+kind, func(b *testing.B) {
			const rows = 1000
			us, rs := manyUsage(rows), manyRated(rows)
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = buf[:0]
				for i := range rows {
					if kind == "usage" {
						buf = AppendJSON(buf, &us[i])
					} else {
						buf = AppendRatedJSON(buf, &rs[i])
					}
					buf = append(buf, '\n')
				}
			}
			reportRows(b, rows, len(buf))
		})
	}
}
