package httpin

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// itemJSON is an ItemError as the 400 response lists it.
type itemJSON struct {
	Line    int    `json:"line,omitempty"`
	Index   *int   `json:"index,omitempty"`
	ID      string `json:"id,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type errorsJSON struct {
	Accepted int        `json:"accepted"`
	Rejected int        `json:"rejected"`
	Errors   []itemJSON `json:"errors"`
}

func writeAccepted(w http.ResponseWriter, n int) {
	var buf [40]byte
	b := append(buf[:0], `{"accepted":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusAccepted, b)
}

func writeErrors(w http.ResponseWriter, accepted, rejected int, errs []ItemError) {
	out := errorsJSON{Accepted: accepted, Rejected: rejected, Errors: make([]itemJSON, len(errs))}
	for i, e := range errs {
		out.Errors[i] = itemJSON{Line: e.Line, ID: e.ID, Reason: e.Reason, Message: e.Message}
		if e.Index >= 0 && e.Line == 0 {
			out.Errors[i].Index = &errs[i].Index
		}
	}
	b, _ := json.Marshal(out)
	writeJSON(w, http.StatusBadRequest, append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
	writeJSON(w, status, append(b, '\n'))
}

// contentTypeJSON is the Content-Type header value of every answer (never modified).
var contentTypeJSON = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
