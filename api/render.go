package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"fleetmeter/record"
)

// table is an answer: named columns and rows of values (string, uint64, int64, bool,
// money or stamp), rendered as JSON objects or CSV rows.
type table struct {
	name string // the JSON field holding the rows
	cols []string
	rows [][]any
	meta map[string]any // extra JSON fields (tenant, range, next_cursor)
	next string         // next page cursor ("" on the last page); CSV: X-Next-Cursor
}

// money renders as an exact six-decimal string.
type money int64

// stamp is epoch ms rendered as RFC 3339 UTC.
type stamp int64

func (t stamp) String() string {
	return time.UnixMilli(int64(t)).UTC().Format(time.RFC3339Nano)
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case uint64:
		return strconv.FormatUint(x, 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case money:
		return record.Micros(x).String()
	case stamp:
		return x.String()
	case nil:
		return ""
	}
	panic("api: unrenderable value")
}

func wantsCSV(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/csv")
}

func (t *table) write(w http.ResponseWriter, r *http.Request) {
	if wantsCSV(r) {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		if t.next != "" {
			w.Header().Set("X-Next-Cursor", t.next)
		}
		cw := csv.NewWriter(w)
		_ = cw.Write(t.cols)
		rec := make([]string, len(t.cols))
		for _, row := range t.rows {
			for i, v := range row {
				rec[i] = text(v)
			}
			_ = cw.Write(rec)
		}
		cw.Flush()
		return
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, row := range t.rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		for j, v := range row {
			if j > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(t.cols[j])
			b.Write(k)
			b.WriteByte(':')
			switch x := v.(type) {
			case money, stamp:
				s, _ := json.Marshal(text(x))
				b.Write(s)
			default:
				s, _ := json.Marshal(x)
				b.Write(s)
			}
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	out := map[string]any{t.name: json.RawMessage(b.Bytes())}
	for k, v := range t.meta {
		out[k] = v
	}
	if t.next != "" {
		out["next_cursor"] = t.next
	} else {
		out["next_cursor"] = nil
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) { writeErrorValid(w, code, msg, nil) }

func writeErrorValid(w http.ResponseWriter, code int, msg string, valid []string) {
	body := map[string]any{"error": msg}
	if valid != nil {
		body["valid"] = valid
	}
	writeJSON(w, code, body)
}
