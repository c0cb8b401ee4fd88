package chstore_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/billing"
	"fleetmeter/clickhouse"
	"fleetmeter/rating"
	"fleetmeter/record"
)

func sumMicros(t *testing.T, amounts ...string) record.Micros {
	t.Helper()
	var s record.Micros
	for _, a := range amounts {
		m, err := record.ParseMicros(a)
		if err != nil {
			t.Fatal(err)
		}
		s += m
	}
	return s
}

func invoiceTotal(t *testing.T, inv billing.Invoice) record.Micros {
	t.Helper()
	if len(inv.Totals) != 1 {
		t.Fatalf("%s: totals %v", inv.Number, inv.Totals)
	}
	var lines []string
	for _, l := range inv.Lines {
		lines = append(lines, l.Amount)
	}
	if got, want := sumMicros(t, lines...), sumMicros(t, inv.Totals[0].Amount); got != want {
		t.Fatalf("%s: lines sum to %s, total says %s", inv.Number, got, want)
	}
	return sumMicros(t, inv.Totals[0].Amount)
}

// storeTotal is what clickhouse.Store.Totals (the reference read) says for the period.
func storeTotal(t *testing.T, st *clickhouse.Store, tenant, period string) record.Micros {
	t.Helper()
	start, end, _ := rating.PeriodBounds(period)
	tot, err := st.Totals(context.Background(), clickhouse.Filter{Tenant: tenant, From: start, To: end})
	if err != nil || len(tot) != 1 {
		t.Fatalf("totals: %v %v", tot, err)
	}
	return tot[0].Amount
}

// TestInvoiceLifecycle: a draft while the period is open (provisional fees left out), a
// final invoice once it is closed whose total is the period's rated records to the
// micro-unit (duplicates and later ratings counted once, first rating), a second close
// that changes nothing, late usage landing once on a correction note made final by the
// next period's close, and over both
// documents the total of every rated record of the period.
func TestInvoiceLifecycle(t *testing.T) {
	ctx := context.Background()
	st, cs := open(t)
	h := newHandler(t, cs, nil)
	inv := billing.NewInvoices(cs, 1e9, nil)

	recs := []record.Rated{
		usage("acme", "d1", "ev-1", "2026-10", 3, 1_000_000, 1_000_000, 1), // 1.5 MB at 0.666666/MB
		usage("acme", "d1", "ev-2", "2026-10", 4, 2_000_000, 2_000_000, 2),
		usage("acme", "d2", "ev-3", "2026-10", 5, 10, 7, 3),
		fee("acme", "d1", "2026-10", 500_000, 4),
		fee("acme", "d2", "2026-10", 500_000, 5),
		usage("acme", "d1", "ev-other", "2026-11", 3, 5, 123, 6), // another period
		usage("zeta", "d1", "ev-z", "2026-10", 3, 5, 999, 7),     // another tenant
	}
	recs[2].Offer = "cricket-final"
	later := recs[0]
	later.RatedTime, later.Amount = 100, 5_555_555 // a later rating: must not count
	for _, b := range [][]record.Rated{recs, recs[:3], {later}} {
		if err := st.InsertRated(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	waitVisible(t, cs)

	// Open: a draft of the usage only.
	docs, err := inv.Documents(ctx, "acme", "2026-10")
	if err != nil || len(docs) != 1 || docs[0].Status != "draft" || docs[0].Number != "acme-202610" {
		t.Fatalf("open period: %+v %v", docs, err)
	}
	if got := invoiceTotal(t, docs[0]); got != 3_000_007 {
		t.Errorf("draft total %s, want 3.000007 (usage, no provisional fee)", got)
	}
	if made, err := inv.Finalize(ctx, "2026-10"); err != nil || len(made) != 0 {
		t.Fatalf("finalize before close: %v %v", made, err)
	}

	// Close: the adjustment makes the fees exact; finalization fixes the invoice.
	if err := st.InsertRated(ctx, []record.Rated{adj("acme", "2026-10", -200_000, 8)}); err != nil {
		t.Fatal(err)
	}
	waitVisible(t, cs)
	made, err := billing.Finalize(ctx, inv, "2026-10")
	if err != nil || len(made) != 1 || made[0].Status != "final" {
		t.Fatalf("finalize: %+v %v", made, err)
	}
	final := made[0]
	if got, want := invoiceTotal(t, final), storeTotal(t, st, "acme", "2026-10"); got != want || got != 3_800_007 {
		t.Errorf("final total %s, reference %s, want 3.800007", got, want)
	}
	var fees, adjs, data int
	for _, l := range final.Lines {
		switch {
		case l.Charge == "device_fee":
			fees++
			if l.Quantity != "2" || l.UnitPrice != "0.500000" || l.Amount != "1.000000" {
				t.Errorf("fee line %+v", l)
			}
		case l.Charge == "adjustment":
			adjs++
		case l.Dimension == "data" && l.Offer == "":
			data++
			if l.Quantity != "4.500000" || l.Unit != "MB" || l.UnitPrice != "0.666666667" && l.UnitPrice != "mixed" || l.Records != 2 {
				t.Errorf("data line %+v", l)
			}
		}
	}
	if fees != 1 || adjs != 1 || data != 1 {
		t.Errorf("lines %+v", final.Lines)
	}

	// Closing again changes nothing.
	if again, err := inv.Finalize(ctx, "2026-10"); err != nil || len(again) != 0 {
		t.Fatalf("second finalize: %v %v", again, err)
	}

	// Late usage for the closed period: the invoice stays as it was; a correction note.
	if err := st.InsertRated(ctx, []record.Rated{usage("acme", "d3", "ev-late", "2026-10", 20, 1, 42, 9)}); err != nil {
		t.Fatal(err)
	}
	waitVisible(t, cs)
	docs, err = inv.Documents(ctx, "acme", "2026-10")
	if err != nil || len(docs) != 2 || docs[1].Kind != "correction" || docs[1].Status != "draft" {
		t.Fatalf("after late usage: %+v %v", docs, err)
	}
	a, _ := json.Marshal(docs[0])
	b, _ := json.Marshal(final)
	if string(a) != string(b) {
		t.Errorf("final invoice changed:\n%s\n%s", a, b)
	}
	// The next close (of the next period) makes the correction note final.
	made, err = inv.Finalize(ctx, "2026-11")
	if err != nil || len(made) != 1 || made[0].Number != "acme-202610-C1" || made[0].Corrects != "acme-202610" {
		t.Fatalf("finalize correction: %+v %v", made, err)
	}
	if got := invoiceTotal(t, made[0]); got != 42 {
		t.Errorf("correction total %s, want 0.000042", got)
	}
	if sum, ref := invoiceTotal(t, final)+invoiceTotal(t, made[0]), storeTotal(t, st, "acme", "2026-10"); sum != ref {
		t.Errorf("documents sum to %s, rated records to %s", sum, ref)
	}

	// Over HTTP: JSON by id, CSV, and another tenant's key sees nothing.
	rec := get(t, h, "acme", "/v1/invoices/acme-202610-C1")
	var got billing.Invoice
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil || got.Status != "final" || got.Totals[0].Amount != "0.000042" {
		t.Errorf("GET C1: %d %+v %v", rec.Code, got, err)
	}
	rec = get(t, h, "operator", "/v1/invoices?tenant=acme&period=2026-10&format=csv")
	rows, err := csv.NewReader(rec.Body).ReadAll()
	if err != nil || rows[len(rows)-1][5] != "total" || rows[len(rows)-1][17] != "0.000042" {
		t.Errorf("CSV: %v %q", err, rows)
	}
	// The PDF of the final invoice says what its JSON says.
	rec = get(t, h, "acme", "/v1/invoices/acme-202610", "Accept", "application/pdf")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/pdf" {
		t.Fatalf("PDF: %d %v", rec.Code, rec.Header())
	}
	pdf := filepath.Join(t.TempDir(), "inv.pdf")
	if err := os.WriteFile(pdf, rec.Body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := exec.Command("pdftotext", "-layout", pdf, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext (poppler-utils): %v %s", err, text)
	}
	for _, w := range append([]string{final.Number, final.Totals[0].Amount + " EUR"}, lineAmounts(final)...) {
		if !strings.Contains(string(text), w) {
			t.Errorf("PDF text lacks %q:\n%s", w, text)
		}
	}
	if rec := get(t, h, "zeta", "/v1/invoices/acme-202610"); rec.Code != 404 {
		t.Errorf("zeta reading acme's invoice: %d", rec.Code)
	}
	if rec := get(t, h, "operator", "/v1/invoices?period=2026-10"); rec.Code != 400 {
		t.Errorf("operator without tenant: %d", rec.Code)
	}
}

func lineAmounts(inv billing.Invoice) []string {
	var out []string
	for _, l := range inv.Lines {
		out = append(out, l.Amount, l.Quantity)
	}
	return out
}
