package billing

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
)

// Caller is who a request comes from, as the API's key check established it.
type Caller struct {
	Tenant   string // the tenant a tenant key sees; "" for an operator
	Operator bool   // sees every tenant
}

// CallerFunc reads the caller of an authenticated request (cmd/api: api.TenantFrom).
type CallerFunc func(*http.Request) (Caller, bool)

// Handler serves GET /v1/billing/records, GET /v1/invoices and GET /v1/invoices/{id}.
// Mount it behind the API's key check.
type Handler struct {
	mux      *http.ServeMux
	exporter *Exporter
	invoices *Invoices
	caller   CallerFunc
	log      *slog.Logger
}

// DefaultPageLimit is limit= when a request gives none.
const DefaultPageLimit = 10_000

// NewHandler returns the billing HTTP handler.
func NewHandler(exp *Exporter, inv *Invoices, caller CallerFunc, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{mux: http.NewServeMux(), exporter: exp, invoices: inv, caller: caller, log: log}
	h.mux.HandleFunc("GET /v1/billing/records", h.records)
	h.mux.HandleFunc("GET /v1/invoices", h.invoiceList)
	h.mux.HandleFunc("GET /v1/invoices/{id}", h.invoiceByID)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func fail(code int, msg string) error { return &httpError{code, msg} }

func (h *Handler) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := "internal error"
	var he *httpError
	switch {
	case errors.As(err, &he):
		code, msg = he.code, he.msg
	case errors.Is(err, ErrBadCursor), errors.Is(err, ErrLimit), errors.Is(err, ErrBadRequest):
		code, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrNotFound):
		code, msg = http.StatusNotFound, err.Error()
	default:
		h.log.Error("billing request failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// scope returns the tenant a request reads: a tenant key's own (tenant= may only repeat
// it), an operator's tenant= (empty: every tenant, where allowed).
func (h *Handler) scope(r *http.Request, needTenant bool) (string, error) {
	c, ok := h.caller(r)
	if !ok {
		return "", fail(http.StatusUnauthorized, "missing or unknown API key")
	}
	t := r.URL.Query().Get("tenant")
	if !c.Operator {
		if t != "" && t != c.Tenant {
			return "", fail(http.StatusForbidden, "tenant "+strconv.Quote(t)+": this key sees only its own tenant")
		}
		return c.Tenant, nil
	}
	if t == "" && needTenant {
		return "", fail(http.StatusBadRequest, "tenant: required with an operator key")
	}
	return t, nil
}

func (h *Handler) records(w http.ResponseWriter, r *http.Request) {
	if err := h.serveRecords(w, r); err != nil {
		h.writeErr(w, r, err)
	}
}

func (h *Handler) serveRecords(w http.ResponseWriter, r *http.Request) error {
	scope, err := h.scope(r, false)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f, ok := NegotiateFormat(q.Get("format"), r.Header.Get("Accept"))
	if !ok {
		return fail(http.StatusBadRequest, "format "+strconv.Quote(q.Get("format"))+": want jsonl, csv, arrow or parquet")
	}
	limit := DefaultPageLimit
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil {
			return fail(http.StatusBadRequest, "limit "+strconv.Quote(s)+": not a number")
		}
	}
	page, err := h.exporter.Page(r.Context(), scope, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", f.ContentType())
	hd.Set("Fleetmeter-Next-Cursor", page.Next)
	hd.Set("Fleetmeter-Caught-Up", strconv.FormatBool(page.CaughtUp))
	hd.Set("Fleetmeter-Watermark", strconv.FormatInt(page.UpTo, 10))
	hd.Set("Fleetmeter-Records", strconv.Itoa(page.Len()))
	defer page.Release()
	rw, err := NewRecordWriter(f, w)
	if err != nil {
		return err
	}
	// From here the status is sent: a failure can only cut the body short, which the
	// consumer sees (Fleetmeter-Records, Arrow's end-of-stream, Parquet's footer) and
	// retries with the same cursor.
	if err := page.Write(rw); err != nil {
		h.log.Warn("billing export cut short", "err", err)
		return nil
	}
	if err := rw.Close(); err != nil {
		h.log.Warn("billing export cut short", "err", err)
	}
	return nil
}
