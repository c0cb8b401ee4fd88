package billing_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/billing"
)

func sampleInvoice() billing.Invoice {
	return billing.Invoice{
		Number: "agrico-202610", Kind: "invoice", Status: "final", Tenant: "agrico", Period: "2026-10",
		Currency: "EUR", FinalizedAt: "2026-11-01T00:10:00Z", Records: 12_345,
		Lines: []billing.Line{
			{Charge: "usage", Description: "Usage, data, farm-a, stationary", Tariff: "agri-eu", Zone: "farm-a", Mobility: "stationary",
				Dimension: "data", Quantity: "1234.567890", Unit: "MB", UnitPrice: "0.001", Records: 10_000, Currency: "EUR", Amount: "1.234568"},
			{Charge: "usage", Description: "Usage, events, home, mobile", Tariff: "agri-eu", Zone: "home", Mobility: "mobile",
				Dimension: "events", Quantity: "2000", Unit: "event", UnitPrice: "mixed", Records: 2_000, Currency: "EUR", Amount: "0.020001"},
			{Charge: "usage", Description: "Usage, data, home, nomadic, offer cricket-final", Tariff: "agri-eu", Zone: "home",
				Offer: "cricket-final", Dimension: "data", Quantity: "10.000000", Unit: "MB", UnitPrice: "0", Records: 340, Currency: "EUR", Amount: "0.000000"},
			{Charge: "device_fee", Description: "Device fee: 3 devices x 0.500000", Tariff: "agri-eu", Quantity: "3", Unit: "device",
				UnitPrice: "0.500000", Records: 3, Currency: "EUR", Amount: "1.500000"},
			{Charge: "adjustment", Description: "Device fee adjustment to the exact tiers", Tariff: "agri-eu", Quantity: "1", Unit: "period",
				UnitPrice: "-0.150000", Records: 2, Currency: "EUR", Amount: "-0.150000"},
		},
		Totals: []billing.Amount{{Currency: "EUR", Amount: "2.604569"}},
	}
}

// TestPDFFigures renders a sample invoice and reads it back with pdftotext (poppler-utils):
// the header and every figure of the JSON are in the text. With BILLING_PDF_OUT=DIR it
// also leaves the PDF and a PNG of page 1 (pdftoppm) there, to look at.
func TestPDFFigures(t *testing.T) {
	for _, tool := range []string{"pdftotext", "pdftoppm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian poppler-utils; scripts/deps.sh installs it): %v", tool, err)
		}
	}
	inv := sampleInvoice()
	var buf bytes.Buffer
	if err := billing.RenderPDF(&buf, inv); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if out := os.Getenv("BILLING_PDF_OUT"); out != "" {
		dir = out
	}
	pdf := filepath.Join(dir, inv.Number+".pdf")
	if err := os.WriteFile(pdf, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", pdf, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	text := string(out)
	want := []string{"Invoice", "agrico", "2026-10", "agrico-202610", "EUR", "final", "2.604569 EUR", "Total (12345 records)"}
	for _, l := range inv.Lines {
		want = append(want, l.Amount, l.Quantity, l.UnitPrice)
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("pdftotext output lacks %q:\n%s", w, text)
		}
	}
	if out, err := exec.Command("pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", pdf, filepath.Join(dir, inv.Number)).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v: %s", err, out)
	}
}
