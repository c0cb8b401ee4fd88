package chstore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

// stubAuth stands for cmd/api's key check: X-Test-Tenant names a tenant key's tenant,
// "operator" an operator key.
func stubAuth(r *http.Request) (billing.Caller, bool) {
	switch v := r.Header.Get("X-Test-Tenant"); v {
	case "":
		return billing.Caller{}, false
	case "operator":
		return billing.Caller{Operator: true}, true
	default:
		return billing.Caller{Tenant: v}, true
	}
}

func newHandler(t testing.TB, cs *chstore.Store, notify billing.Notifier) *billing.Handler {
	exp := billing.NewExporter(cs, signer(t), time.Second, 100_000)
	return billing.NewHandler(exp, billing.NewInvoices(cs, time.Second, notify), stubAuth, nil)
}

func get(t testing.TB, h http.Handler, who, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if who != "" {
		req.Header.Set("X-Test-Tenant", who)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// waitVisible waits until the store's watermark (now - lag) has passed the current second,
// so what was inserted before the call is exportable.
func waitVisible(t testing.TB, cs *chstore.Store) {
	t.Helper()
	ctx := context.Background()
	start, err := cs.Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		now, err := cs.Now(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if now-1 > start {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func seed(t testing.TB, st *clickhouse.Store) []record.Rated {
	recs := []record.Rated{
		usage("acme", "d1", "ev-1", "2026-11", 3, 1_000_000, 1_500_000, 1),
		usage("acme", "d2", "ev-22", "2026-11", 4, 2_000_000, 3_000_001, 2),
		usage("zeta", "d1", "ev-333", "2026-11", 5, 10, -7, 3),
	}
	recs[1].Lat, recs[1].Lon, recs[1].HasPos = 52.52, 13.405, true
	recs[1].SliceSST, recs[1].HasSlice = 3, true
	if err := st.InsertRated(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestRecordsFormats pulls the same records in every format and reads them back with
// each format's own reader (encoding/csv, arrow-go's IPC reader, its Parquet reader).
func TestRecordsFormats(t *testing.T) {
	st, cs := open(t)
	want := seed(t, st)
	waitVisible(t, cs)
	h := newHandler(t, cs, nil)

	// JSON Lines, by Accept.
	rec := get(t, h, "operator", "/v1/billing/records", "Accept", "application/x-ndjson")
	if rec.Code != 200 {
		t.Fatalf("jsonl: %d %s", rec.Code, rec.Body)
	}
	var got []record.Rated
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		r, err := record.ParseRatedJSON(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 3 || got[1].Amount != want[1].Amount || got[1].Lat != 52.52 || !got[1].HasSlice {
		t.Fatalf("jsonl: got %+v", got)
	}
	if rec.Header().Get("Fleetmeter-Caught-Up") != "true" {
		t.Errorf("jsonl: not caught up: %v", rec.Header())
	}

	// CSV, by format=.
	rec = get(t, h, "operator", "/v1/billing/records?format=csv")
	rows, err := csv.NewReader(rec.Body).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][28] != "amount" || rows[2][28] != "3.000001" || rows[3][28] != "-0.000007" {
		t.Fatalf("csv: %v %q", err, rows)
	}

	// Arrow IPC stream.
	rec = get(t, h, "operator", "/v1/billing/records", "Accept", "application/vnd.apache.arrow.stream")
	rd, err := ipc.NewReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rd.Next() {
		b := rd.RecordBatch()
		amt := b.Column(28).(*array.Decimal128)
		ids, devs := b.Column(19).(*array.String), b.Column(2).(*array.String)
		for i := range int(b.NumRows()) {
			if got := amt.Value(i).ToString(6); got != want[n].Amount.String() {
				t.Errorf("arrow row %d amount %s, want %s", n, got, want[n].Amount)
			}
			if ids.Value(i) != want[n].RecordID || devs.Value(i) != want[n].Device {
				t.Errorf("arrow row %d: record_id %q device %q, want %q %q", n, ids.Value(i), devs.Value(i), want[n].RecordID, want[n].Device)
			}
			n++
		}
	}
	if rd.Err() != nil || n != 3 {
		t.Fatalf("arrow: %v, %d rows", rd.Err(), n)
	}

	// Parquet.
	rec = get(t, h, "operator", "/v1/billing/records?format=parquet")
	pf, err := file.NewParquetReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != 3 || tbl.Schema().Field(19).Name != "record_id" {
		t.Fatalf("parquet: %d rows, schema %v", tbl.NumRows(), tbl.Schema())
	}
	ids := tbl.Column(19).Data().Chunk(0).(*array.String)
	if ids.Value(0) != "ev-1" || ids.Value(2) != "ev-333" {
		t.Errorf("parquet record ids %v", ids)
	}
}

// TestRecordsCursorScope: a tenant key sees only its tenant, cannot use another scope's
// cursor, and a tampered cursor is refused; following cursors ends caught up.
func TestRecordsCursorScope(t *testing.T) {
	st, cs := open(t)
	seed(t, st)
	waitVisible(t, cs)
	h := newHandler(t, cs, nil)

	if rec := get(t, h, "", "/v1/billing/records"); rec.Code != 401 {
		t.Errorf("no key: %d", rec.Code)
	}
	if rec := get(t, h, "acme", "/v1/billing/records?tenant=zeta"); rec.Code != 403 {
		t.Errorf("acme asking for zeta: %d", rec.Code)
	}
	var ids []string
	cursor := ""
	for range 5 {
		rec := get(t, h, "acme", "/v1/billing/records?limit=1&cursor="+url.QueryEscape(cursor))
		if rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		body, _ := io.ReadAll(rec.Body)
		for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
			if line != "" {
				r, err := record.ParseRatedJSON([]byte(line))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, r.Tenant+"/"+r.RecordID)
			}
		}
		cursor = rec.Header().Get("Fleetmeter-Next-Cursor")
		if rec.Header().Get("Fleetmeter-Caught-Up") == "true" {
			break
		}
	}
	if strings.Join(ids, ",") != "acme/ev-1,acme/ev-22" {
		t.Errorf("acme pulled %v", ids)
	}
	if rec := get(t, h, "zeta", "/v1/billing/records?cursor="+url.QueryEscape(cursor)); rec.Code != 400 {
		t.Errorf("zeta with acme's cursor: %d", rec.Code)
	}
	bad := []byte(cursor)
	bad[len(bad)/2] ^= 1
	if rec := get(t, h, "acme", "/v1/billing/records?cursor="+url.QueryEscape(string(bad))); rec.Code != 400 {
		t.Errorf("tampered cursor: %d", rec.Code)
	}
	if rec := get(t, h, "acme", "/v1/billing/records?format=xml"); rec.Code != 400 {
		t.Errorf("format=xml: %d", rec.Code)
	}
}
