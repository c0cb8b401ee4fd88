package record

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendTimeMatchesTime: AppendTime writes what time's AppendFormat with TimeLayout
// writes, at the edges (epoch, negative instants, leap days, century years, the ends of
// years 0000 and 9999 and past them) and at a million random instants.
func TestAppendTimeMatchesTime(t *testing.T) {
	ms := []int64{0, -1, 1, 999, -999, -1000, 86_399_999, -86_400_000, 951_782_400_000, 951_868_799_999,
		4_107_542_400_000, -2_203_891_200_000, -62_167_219_200_000, -62_167_219_200_001, 253_402_300_799_999,
		253_402_300_800_000, 1_700_000_000_123, -62_162_121_600_000, -59_011_459_200_000}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		ms = append(ms, rng.Int64N(253_402_300_800_000+62_167_219_200_000+2_000_000_000)-62_167_219_200_000-1_000_000_000)
	}
	for _, m := range ms {
		want := time.UnixMilli(m).UTC().Format(TimeLayout)
		if got := string(AppendTime(nil, m)); got != want {
			t.Fatalf("AppendTime(%d) = %s, want %s", m, got, want)
		}
	}
}

func BenchmarkAppendTime(b *testing.B) {
	buf := make([]byte, 0, 32)
	b.Run("impl=record", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			buf = AppendTime(buf[:0], 1_700_000_000_000+int64(i)*7919)
		}
	})
	b.Run("impl=time", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			buf = time.UnixMilli(1_700_000_000_000+int64(i)*7919).UTC().AppendFormat(buf[:0], TimeLayout)
		}
	})
}
