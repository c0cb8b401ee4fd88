package chstore_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/clickhouse"
	"fleetmeter/record"
)

// benchRowCount is FLEETMETER_BENCH_ROWS, 1,000,000 by default.
func benchRowCount() int {
	if n, err := strconv.Atoi(os.Getenv("FLEETMETER_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// benchAddr is the server the benchmark reads: FLEETMETER_BENCH_CLICKHOUSE (a native
// address) keeps the loaded rows between runs, in database billing_bench_<rows>;
// otherwise the test binary's own server, loaded each run.
func benchAddr() (addr, db string, keep bool) {
	if a := os.Getenv("FLEETMETER_BENCH_CLICKHOUSE"); a != "" {
		return a, fmt.Sprintf("billing_bench_%d", benchRowCount()), true
	}
	return srv.NativeAddr(), fmt.Sprintf("billing_bench_%d", os.Getpid()), false
}

var benchOnce struct {
	sync.Once
	st  *clickhouse.Store
	cs  *chstore.Store
	db  string
	n   int
	err error
}

// benchStore loads the rated rows once per test binary: 3 tenants, 1000 devices.
func benchStore(b *testing.B) (*chstore.Store, string, int) {
	benchOnce.Do(func() {
		addr, db, keep := benchAddr()
		cfg := clickhouse.DefaultConfig()
		cfg.Addr = []string{addr}
		cfg.Database = db
		cfg.Compression = cmp.Or(os.Getenv("FLEETMETER_BENCH_COMPRESSION"), cfg.Compression)
		ctx := context.Background()
		st, err := clickhouse.Open(ctx, cfg)
		if err != nil {
			benchOnce.err = err
			return
		}
		n := benchRowCount()
		benchOnce.st, benchOnce.cs, benchOnce.db, benchOnce.n = st, chstore.New(st.Conn(), cfg.Database).Final(true), cfg.Database, n
		if keep {
			var have uint64
			if err := st.Conn().QueryRow(ctx, "SELECT count() FROM "+db+".rated_seen").Scan(&have); err != nil {
				benchOnce.err = err
				return
			}
			if have == uint64(n) {
				return
			}
			if have != 0 {
				benchOnce.err = fmt.Errorf("%s holds %d rows, not %d: drop it", db, have, n)
				return
			}
		}
		rows := make([]record.Rated, 0, 100_000)
		tenants := []string{"acme-automotive", "utility-north", "farm-coop"}
		t0 := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
		for i := range n {
			id := fmt.Sprintf("ev-%016x", i)
			start := t0 + int64(i%2_000_000)*1000
			rows = append(rows, record.Rated{
				Usage: record.Usage{EventID: id, Tenant: tenants[i%3], Device: fmt.Sprintf("imsi-26201%010d", i%1000), Source: "mqtt",
					StartTime: start, EndTime: start + 60_000, ReceivedTime: start + 61_000, BytesUp: uint64(i % 5000),
					BytesDown: uint64(i % 70000), DurationMs: 60_000, Events: 1, RatingGroup: 10, PLMN: "262-01",
					Cell: fmt.Sprintf("ecgi-%d", i%500), Lat: 52.5, Lon: 13.4, HasPos: i%4 != 0, RAT: "NB-IoT", SliceSST: 3, HasSlice: i%2 == 0},
				RecordID: id, Charge: record.ChargeUsage, Zone: "home", Mobility: "stationary", Tariff: "iot-basic",
				TariffVersion: "2026-10", ActiveDevices: 1000, Currency: "EUR", Amount: record.Micros(i % 9999), RatedTime: start + 62_000,
			})
			if len(rows) == cap(rows) || i == n-1 {
				if err := st.InsertRated(ctx, rows); err != nil {
					benchOnce.err = err
					return
				}
				rows = rows[:0]
			}
		}
		// Measure reads, not the background merges of a fresh insert.
		for _, table := range []string{"rated_usage", "rated_seen"} {
			if err := st.Conn().Exec(ctx, "OPTIMIZE TABLE "+cfg.Database+"."+table+" FINAL"); err != nil {
				benchOnce.err = err
				return
			}
		}
	})
	if benchOnce.err != nil {
		b.Fatal(benchOnce.err)
	}
	waitVisible(b, benchOnce.cs)
	return benchOnce.cs, benchOnce.db, benchOnce.n
}

// pullAll follows cursors from the empty one until caught up, writing each page in f to
// io.Discard, and returns the rows written. pipelined: see BenchmarkExport.
func pullAll(b *testing.B, exp *billing.Exporter, f billing.Format, pipelined bool) int {
	write := func(page billing.Page) (int, error) {
		defer page.Release()
		w, err := billing.NewRecordWriter(f, io.Discard)
		if err != nil {
			return 0, err
		}
		if err := page.Write(w); err != nil {
			return 0, err
		}
		return page.Len(), w.Close()
	}
	pages := make(chan billing.Page) // the page being written while the next is read
	type result struct {
		rows int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for page := range pages {
			n, err := write(page)
			r.rows += n
			r.err = cmp.Or(r.err, err)
		}
		done <- r
	}()
	rows, cursor := 0, ""
	for {
		page, err := exp.Page(context.Background(), "", cursor, 1_000_000)
		if err != nil {
			close(pages)
			b.Fatal(err)
		}
		cursor = page.Next
		caughtUp := page.CaughtUp
		if pipelined {
			pages <- page
		} else {
			n, err := write(page)
			if err != nil {
				close(pages)
				b.Fatal(err)
			}
			rows += n
		}
		if caughtUp {
			break
		}
	}
	close(pages)
	r := <-done
	if r.err != nil {
		b.Fatal(r.err)
	}
	return rows + r.rows
}

// cpuMeter measures CPU seconds: this process's (getrusage) and the ClickHouse server's
// (its UserTime and SystemTime counters in system.events), so a run on a shared box says
// what the work cost, not only how long it waited.
type cpuMeter struct {
	st           *clickhouse.Store
	self, server float64
}

func (m *cpuMeter) read(b *testing.B) (self, server float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	var us uint64
	q := "SELECT sum(value) FROM system.events WHERE event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds')"
	if err := m.st.Conn().QueryRow(context.Background(), q).Scan(&us); err != nil {
		b.Fatal(err)
	}
	return self, float64(us) / 1e6
}

func (m *cpuMeter) start(b *testing.B) { m.self, m.server = m.read(b) }

// report adds client-cpu-s/Mrow and server-cpu-s/Mrow for rows, client CPU being this
// process's plus extra (a child's).
func (m *cpuMeter) report(b *testing.B, rows int, extra float64) {
	self, server := m.read(b)
	mrows := float64(rows) / 1e6
	b.ReportMetric((self-m.self+extra)/mrows, "client-cpu-s/Mrow")
	b.ReportMetric((server-m.server)/mrows, "server-cpu-s/Mrow")
}

// BenchmarkExport pulls every row through the export (cursor pages of a million rows:
// keys, read, encode to io.Discard) in each format, beside clickhouse-client reading the
// same rows' columns as FORMAT Native in the same run. rows/s is the figure; CPU seconds
// per million rows, of the client (this process, or clickhouse-client) and of the server,
// say what it cost on a box other jobs share.
//
// pull=sequential asks for a page once the previous one is written; pull=pipelined asks
// for the next page as soon as a page is read and writes the page meanwhile, as an HTTP
// consumer does that sends the next request when a response's headers
// (Fleetmeter-Next-Cursor) arrive, on a second connection: the API then encodes one page
// while it reads the next.
//
//	go test -run '^$' -bench Export -benchtime 1x ./billing/chstore/
//	FLEETMETER_BENCH_ROWS=10000000 go test -run '^$' -bench Export -benchtime 1x -timeout 60m ./billing/chstore/
func BenchmarkExport(b *testing.B) {
	cs, db, n := benchStore(b)
	m := &cpuMeter{st: benchOnce.st}
	sig, _ := billing.NewSigner(testKey)
	exp := billing.NewExporter(cs, sig, time.Second, 1_000_000)
	for _, f := range []billing.Format{billing.ArrowStream, billing.Parquet, billing.JSONLines, billing.CSV} {
		for _, pipelined := range []bool{false, true} {
			if pipelined && f == billing.CSV {
				continue
			}
			b.Run(fmt.Sprintf("format=%s/pull=%s", f, map[bool]string{false: "sequential", true: "pipelined"}[pipelined]), func(b *testing.B) {
				m.start(b)
				for b.Loop() {
					if rows := pullAll(b, exp, f, pipelined); rows != n {
						b.Fatalf("exported %d rows, want %d", rows, n)
					}
				}
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				m.report(b, n*b.N, 0)
			})
		}
	}
	b.Run("raw=clickhouse-client-native", func(b *testing.B) {
		addr, _, _ := benchAddr()
		host, port, _ := net.SplitHostPort(addr)
		q := "SELECT event_id, tenant, device, source, start_time_ms, end_time_ms, received_time_ms, bytes_up, bytes_down, " +
			"duration_ms, events, rating_group, plmn, cell, lat, lon, rat, slice_sst, slice_sd, record_id, charge, zone, mobility, " +
			"tariff, tariff_version, offer, active_devices, currency, amount_micros, rated_time_ms FROM " + db + ".rated_usage FORMAT Native"
		m.start(b)
		var child float64
		for b.Loop() {
			cmd := exec.Command("clickhouse-client", "--host", host, "--port", port, "--query", q)
			cmd.Stdout = io.Discard
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				b.Fatalf("clickhouse-client: %v %s", err, stderr.String())
			}
			child += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		m.report(b, n*b.N, child)
	})
}
