package billing

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// docFormat is json, csv or pdf, by format= or Accept (json by default).
func docFormat(r *http.Request, allowPDF bool) (string, error) {
	names := map[string]string{"json": "json", "application/json": "json", "csv": "csv", "text/csv": "csv"}
	if allowPDF {
		names["pdf"], names["application/pdf"] = "pdf", "pdf"
	}
	if p := r.URL.Query().Get("format"); p != "" {
		if f, ok := names[strings.ToLower(p)]; ok {
			return f, nil
		}
		return "", fail(http.StatusBadRequest, "format "+strconv.Quote(p)+": want json, csv"+map[bool]string{true: " or pdf", false: ""}[allowPDF])
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil {
			if f, ok := names[mt]; ok {
				return f, nil
			}
		}
	}
	return "json", nil
}

func (h *Handler) invoiceList(w http.ResponseWriter, r *http.Request) {
	tenant, err := h.scope(r, true)
	if err == nil {
		var f string
		if f, err = docFormat(r, false); err == nil {
			var docs []Invoice
			if docs, err = h.invoices.Documents(r.Context(), tenant, r.URL.Query().Get("period")); err == nil {
				if f == "csv" {
					w.Header().Set("Content-Type", "text/csv; charset=utf-8")
					err = WriteInvoicesCSV(w, docs)
				} else {
					w.Header().Set("Content-Type", "application/json")
					err = json.NewEncoder(w).Encode(map[string]any{"invoices": docs})
				}
				if err != nil {
					return // body cut short: nothing more to say
				}
			}
		}
	}
	if err != nil {
		h.writeErr(w, r, err)
	}
}

func (h *Handler) invoiceByID(w http.ResponseWriter, r *http.Request) {
	if err := h.serveInvoice(w, r); err != nil {
		h.writeErr(w, r, err)
	}
}

func (h *Handler) serveInvoice(w http.ResponseWriter, r *http.Request) error {
	c, ok := h.caller(r)
	if !ok {
		return fail(http.StatusUnauthorized, "missing or unknown API key")
	}
	id := r.PathValue("id")
	tenant, _, _, err := ParseNumber(id)
	if err != nil {
		return err
	}
	if !c.Operator && tenant != c.Tenant {
		return fail(http.StatusNotFound, "not found: invoice "+id) // another tenant's: not even its existence
	}
	f, err := docFormat(r, true)
	if err != nil {
		return err
	}
	inv, err := h.invoices.Document(r.Context(), id)
	if err != nil {
		return err
	}
	switch f {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		_ = WriteInvoicesCSV(w, []Invoice{inv})
	case "pdf":
		w.Header().Set("Content-Type", "application/pdf")
		w.Header().Set("Content-Disposition", `inline; filename="`+inv.Number+`.pdf"`)
		_ = RenderPDF(w, inv)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(inv)
	}
	return nil
}

// WriteInvoicesCSV writes the lines of docs, one row per line, then one total row per
// document and currency (charge "total").
func WriteInvoicesCSV(out io.Writer, docs []Invoice) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"number", "kind", "status", "tenant", "period", "charge", "description", "tariff", "zone",
		"mobility", "offer", "dimension", "quantity", "unit", "unit_price", "records", "currency", "amount"})
	for _, d := range docs {
		for _, l := range d.Lines {
			_ = w.Write([]string{d.Number, d.Kind, d.Status, d.Tenant, d.Period, l.Charge, l.Description, l.Tariff, l.Zone,
				l.Mobility, l.Offer, l.Dimension, l.Quantity, l.Unit, l.UnitPrice, strconv.FormatUint(l.Records, 10), l.Currency, l.Amount})
		}
		for _, t := range d.Totals {
			_ = w.Write([]string{d.Number, d.Kind, d.Status, d.Tenant, d.Period, "total", "Total", "", "", "", "", "", "", "", "",
				strconv.FormatUint(d.Records, 10), t.Currency, t.Amount})
		}
	}
	w.Flush()
	return w.Error()
}
