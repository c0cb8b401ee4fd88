package billing

import (
	"fmt"
	"io"

	"github.com/go-pdf/fpdf"
)

// RenderPDF writes inv as an A4 PDF: a header (tenant, period, number, kind, status,
// currency, what it covers), the lines as a table, and the totals. Figures are the
// JSON's strings, so the PDF shows exactly what the JSON says.
func RenderPDF(w io.Writer, inv Invoice) error {
	p := fpdf.New("L", "mm", "A4", "")
	p.SetTitle("Invoice "+inv.Number, true)
	p.SetCreator("fleetmeter", true)
	p.SetAutoPageBreak(true, 15)
	tr := p.UnicodeTranslatorFromDescriptor("") // cp1252: the core fonts' encoding
	p.SetFooterFunc(func() {
		p.SetY(-12)
		p.SetFont("Helvetica", "", 8)
		p.CellFormat(0, 5, tr(fmt.Sprintf("%s  -  page %d", inv.Number, p.PageNo())), "", 0, "R", false, 0, "")
	})
	p.AddPage()

	title := "Invoice"
	if inv.Kind == "correction" {
		title = "Correction note"
	}
	if inv.Status != "final" {
		title += " (DRAFT)"
	}
	p.SetFont("Helvetica", "B", 18)
	p.CellFormat(0, 10, tr(title), "", 1, "L", false, 0, "")
	p.SetFont("Helvetica", "", 10)
	head := [][2]string{
		{"Tenant", inv.Tenant}, {"Period", inv.Period}, {"Invoice number", inv.Number},
		{"Currency", inv.Currency}, {"Status", inv.Status},
	}
	if inv.Corrects != "" {
		head = append(head, [2]string{"Corrects", inv.Corrects})
	}
	if inv.FinalizedAt != "" {
		head = append(head, [2]string{"Finalized", inv.FinalizedAt})
	}
	for _, kv := range head {
		p.SetFont("Helvetica", "B", 10)
		p.CellFormat(35, 6, tr(kv[0]+":"), "", 0, "L", false, 0, "")
		p.SetFont("Helvetica", "", 10)
		p.CellFormat(0, 6, tr(kv[1]), "", 1, "L", false, 0, "")
	}
	p.Ln(4)

	cols := []struct {
		name  string
		width float64
		align string
	}{
		{"Description", 78, "L"}, {"Tariff", 30, "L"}, {"Quantity", 52, "R"}, {"Unit", 14, "L"},
		{"Unit price", 30, "R"}, {"Records", 20, "R"}, {"Cur.", 12, "L"}, {"Amount", 41, "R"},
	}
	header := func() {
		p.SetFont("Helvetica", "B", 9)
		p.SetFillColor(225, 230, 240)
		for _, c := range cols {
			p.CellFormat(c.width, 7, tr(c.name), "1", 0, c.align, true, 0, "")
		}
		p.Ln(-1)
		p.SetFont("Helvetica", "", 9)
	}
	header()
	for _, l := range inv.Lines {
		if p.GetY() > 180 {
			p.AddPage()
			header()
		}
		vals := []string{l.Description, l.Tariff, l.Quantity, l.Unit, l.UnitPrice, fmt.Sprint(l.Records), l.Currency, l.Amount}
		for i, c := range cols {
			s := vals[i]
			for p.GetStringWidth(tr(s)) > c.width-2 && len(s) > 3 {
				s = s[:len(s)-4] + "..."
			}
			p.CellFormat(c.width, 6, tr(s), "1", 0, c.align, false, 0, "")
		}
		p.Ln(-1)
	}
	if len(inv.Lines) == 0 {
		p.CellFormat(0, 6, tr("No records."), "1", 1, "L", false, 0, "")
	}
	p.Ln(3)
	p.SetFont("Helvetica", "B", 11)
	for _, t := range inv.Totals {
		p.CellFormat(236, 7, tr(fmt.Sprintf("Total (%d records)", inv.Records)), "", 0, "R", false, 0, "")
		p.CellFormat(41, 7, tr(t.Amount+" "+t.Currency), "T", 1, "R", false, 0, "")
	}
	return p.Output(w)
}
