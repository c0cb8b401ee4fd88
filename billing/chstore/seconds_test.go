package chstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fleetmeter/billing"
	"fleetmeter/billing/chstore"
	"fleetmeter/record"
)

// uncached reads every page on a store of its own, so no page's seconds come from an
// earlier page's read.
type uncached struct {
	*chstore.Store
	fresh func() *chstore.Store
}

func (u uncached) Export(ctx context.Context, req billing.ExportRequest, into []billing.Exported) ([]billing.Exported, int64, error) {
	return u.fresh().Export(ctx, req, into)
}

func (u uncached) ExportColumns(ctx context.Context, req billing.ExportRequest, into *billing.Columns) (int64, error) {
	return u.fresh().ExportColumns(ctx, req, into)
}

// TestExportSecondsCached: a pull reads the seconds of rated_seen (span and key range)
// from the server once for the pages that follow, not once a page, and every page equals
// the page a store without the kept seconds reads: records stored over four seconds with
// redelivered copies, pulled for all tenants and for one, with limits that end pages
// inside seconds and at their ends, and with runs kept to one second past the page (read
// again from the server as the pull moves on).
func TestExportSecondsCached(t *testing.T) {
	ctx := context.Background()
	st, cs := open(t)
	storeSeconds(t, st, 4, 30, []string{"acme", "zeta"}, func(sec int, all []record.Rated) []record.Rated {
		return all[max(0, len(all)-40):][:min(len(all), 8)]
	})
	waitVisible(t, cs)
	sig := signer(t)
	db := st.Schema().Database
	for _, scope := range []string{"", "acme"} {
		for _, limit := range []int{7, 20, 45} {
			for _, run := range []int{0, 1} {
				name := fmt.Sprintf("scope=%q/limit=%d/run=%d", scope, limit, run)
				kept := chstore.New(st.Conn(), db).Final(true).AlignMin(1)
				if run > 0 {
					kept.SecondsRun(run)
				}
				fresh := uncached{kept, func() *chstore.Store { return chstore.New(st.Conn(), db).Final(true).AlignMin(1) }}
				a := billing.NewExporter(kept, sig, time.Second, 1000)
				b := billing.NewExporter(fresh, sig, time.Second, 1000)
				ca, cb, pages, n := "", "", 0, 0
				for ; ; pages++ {
					if pages > 40 {
						t.Fatalf("%s: more than 40 pages", name)
					}
					pa, err := a.Page(ctx, scope, ca, limit)
					if err != nil {
						t.Fatal(err)
					}
					pb, err := b.Page(ctx, scope, cb, limit)
					if err != nil {
						t.Fatal(err)
					}
					ra, rb := pa.Rated(), pb.Rated()
					if len(ra) != len(rb) {
						t.Fatalf("%s page %d: %d records, %d read without kept seconds", name, pages, len(ra), len(rb))
					}
					for i := range ra {
						if ra[i] != rb[i] {
							t.Fatalf("%s page %d record %d: %s, %s read without kept seconds", name, pages, i, ra[i].RecordID, rb[i].RecordID)
						}
					}
					n += len(ra)
					ca, cb = pa.Next, pb.Next
					if pa.CaughtUp != pb.CaughtUp {
						t.Fatalf("%s page %d: caught up %v, %v without kept seconds", name, pages, pa.CaughtUp, pb.CaughtUp)
					}
					if pa.CaughtUp {
						break
					}
				}
				want := 120
				if scope != "" {
					want = 60
				}
				if n != want {
					t.Errorf("%s: pulled %d records, want %d", name, n, want)
				}
				// Without runs the seconds are read for the first page and, at most, for
				// the last (its watermark is later than the first's: limit 7 pulls 18
				// pages); with runs of one second again as the pull leaves a run: once
				// for each of the four seconds it reaches, or each page where fewer.
				reads := kept.SecondsReads()
				if run == 0 && reads > 2 || run > 0 && reads < min(pages+1, 4) {
					t.Errorf("%s: seconds read %d times for %d pages", name, reads, pages+1)
				}
			}
		}
	}
}
