package clickhouse_test

import (
	"context"
	"testing"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

// TestRatedCursorReadsBlocks reads the sample records (NULLs, extremes, empty and
// non-ASCII strings) through RatedCursor in blocks of 3 rows and checks it views the
// driver's blocks in place (Fast) and reads what ScanRated reads, field for field. A
// clickhouse-go upgrade that moves the fields the cursor reaches fails here.
func TestRatedCursorReadsBlocks(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	in := sampleRated()
	if err := st.InsertRated(ctx, in); err != nil {
		t.Fatal(err)
	}
	want, err := st.Records(ctx, clickhouse.Filter{}, nil)
	if err != nil || len(want) != len(in) {
		t.Fatalf("records: %v, %d of %d", err, len(want), len(in))
	}
	q, args := clickhouse.RecordsQuery(st.Schema().Database, clickhouse.Filter{})
	rows, err := st.Conn().Query(ch.Context(ctx, ch.WithSettings(ch.Settings{"max_block_size": 3})), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	c := clickhouse.NewRatedCursor(rows)
	if !c.Fast() {
		t.Error("the cursor cannot view clickhouse-go's blocks: it scans row by row (see clickhouse/blocks.go)")
	}
	var got []record.Rated
	for c.Next() {
		var r record.Rated
		if err := c.Rated(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Slow() != 0 {
		t.Errorf("%d values read through ScanRow: the cursor does not know a column's layout (see clickhouse/blocks.go)", c.Slow())
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}
