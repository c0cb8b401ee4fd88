package payload

import (
	"encoding/json"
	"os"
	"runtime"
	"testing"

	"fleetmeter/record"
)

// benchMsg mirrors testdata/json/bench.json for the encoding/json baseline.
type benchMsg struct {
	ID        string `json:"id"`
	TS        int64  `json:"ts"`
	BytesUp   uint64 `json:"bytes_up"`
	BytesDown uint64 `json:"bytes_down"`
	Events    uint64 `json:"events"`
	PLMN      string `json:"plmn"`
	RAT       string `json:"rat"`
}

// BenchmarkParse decodes one device message per iteration into a reused slice.
// Compare kind=json impl=payload against impl=encoding-json from the same run.
func BenchmarkParse(b *testing.B) {
	load := func(name string) []byte {
		d, err := os.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	plain := load("testdata/json/bench.json")
	cases := []struct {
		name string
		kind Kind
		data []byte
	}{
		{"kind=json/impl=payload", KindJSON, plain},
		{"kind=json-auto/impl=payload", KindAuto, plain},
		{"kind=senml-json/impl=payload", KindSenMLJSON, load("testdata/senml/bench.json")},
		{"kind=senml-cbor/impl=payload", KindSenMLCBOR, load("testdata/senml/bench.cbor")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var p Parser
			into := make([]record.Usage, 0, 4)
			b.SetBytes(int64(len(c.data)))
			b.ReportAllocs()
			m := startAllocs()
			for b.Loop() {
				var err error
				if into, err = p.Parse(c.kind, c.data, testID, testReceived, into[:0]); err != nil {
					b.Fatal(err)
				}
			}
			m.report(b)
		})
	}
	b.Run("kind=json/impl=encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(plain)))
		b.ReportAllocs()
		m := startAllocs()
		for b.Loop() {
			var v benchMsg
			if err := json.Unmarshal(plain, &v); err != nil {
				b.Fatal(err)
			}
		}
		m.report(b)
	})
}

type allocCounter struct{ mallocs uint64 }

func startAllocs() allocCounter {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return allocCounter{ms.Mallocs}
}

// report adds the per-message metrics: one message per iteration.
func (a allocCounter) report(b *testing.B) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
	b.ReportMetric(float64(ms.Mallocs-a.mallocs)/float64(b.N), "allocs/msg")
}
