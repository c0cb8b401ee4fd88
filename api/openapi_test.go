package api_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// spec is openapi.yaml decoded as plain data.
type spec map[string]any

func loadSpec(t *testing.T) spec {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %v, want 3.1.0", s["openapi"])
	}
	return s
}

func (s spec) get(path ...string) any {
	var cur any = map[string]any(s)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// validate checks v (decoded JSON) against schema, the subset of JSON Schema the file
// uses: $ref, type (one or a list), required, properties, additionalProperties: false,
// items, enum, pattern, minimum. Errors name the JSON path.
func (s spec) validate(schema any, v any, at string) []string {
	sc, _ := schema.(map[string]any)
	if sc == nil {
		return []string{at + ": no schema"}
	}
	if ref, ok := sc["$ref"].(string); ok {
		return s.validate(s.get(strings.Split(strings.TrimPrefix(ref, "#/"), "/")...), v, at)
	}
	var errs []string
	if ty, ok := sc["type"]; ok {
		var types []string
		switch x := ty.(type) {
		case string:
			types = []string{x}
		case []any:
			for _, y := range x {
				types = append(types, fmt.Sprint(y))
			}
		}
		if !typeIn(v, types) {
			return []string{fmt.Sprintf("%s: %v (%T) is not %v", at, v, v, types)}
		}
	}
	if enum, ok := sc["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v not in %v", at, v, enum))
		}
	}
	if p, ok := sc["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(p).MatchString(str) {
			errs = append(errs, fmt.Sprintf("%s: %q does not match %s", at, str, p))
		}
	}
	if m, ok := sc["minimum"]; ok {
		if f, ok := v.(float64); ok && f < toFloat(m) {
			errs = append(errs, fmt.Sprintf("%s: %v below minimum %v", at, f, m))
		}
	}
	if obj, ok := v.(map[string]any); ok {
		props, _ := sc["properties"].(map[string]any)
		for _, r := range asList(sc["required"]) {
			if _, ok := obj[r]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required %q missing", at, r))
			}
		}
		for k, x := range obj {
			if p, ok := props[k]; ok {
				errs = append(errs, s.validate(p, x, at+"."+k)...)
			} else if sc["additionalProperties"] == false {
				errs = append(errs, fmt.Sprintf("%s: property %q not in the schema", at, k))
			}
		}
	}
	if arr, ok := v.([]any); ok && sc["items"] != nil {
		for i, x := range arr {
			errs = append(errs, s.validate(sc["items"], x, fmt.Sprintf("%s[%d]", at, i))...)
		}
	}
	return errs
}

func typeIn(v any, types []string) bool {
	for _, t := range types {
		switch t {
		case "null":
			if v == nil {
				return true
			}
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "integer":
			if f, ok := v.(float64); ok && f == float64(int64(f)) {
				return true
			}
		case "number":
			if _, ok := v.(float64); ok {
				return true
			}
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		}
	}
	return false
}

func toFloat(x any) float64 {
	var f float64
	fmt.Sscan(fmt.Sprint(x), &f)
	return f
}

func asList(x any) []string {
	var out []string
	l, _ := x.([]any)
	for _, y := range l {
		out = append(out, fmt.Sprint(y))
	}
	return out
}

// TestOpenAPIMatchesHandlers calls every path of openapi.yaml on the real handlers over
// ClickHouse, billing's included (successes and errors, JSON and JSON Lines) and
// validates each answer against the schema the file declares for its status and media
// type, and its headers against the headers declared; the paths the file lists are the
// paths the server routes.
func TestOpenAPIMatchesHandlers(t *testing.T) { bothModes(t, testOpenAPIMatchesHandlers) }

func testOpenAPIMatchesHandlers(t *testing.T, final bool) {
	s := loadSpec(t)
	ts := newServerMode(t, final, limits(), fixtureA(), fixtureB())
	rng := "from=2026-10-01&to=2026-11-01"
	// Billing pages only what ClickHouse stored at least billing.lag (1 s here) ago.
	var next string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, h, _ := fetch(t, ts, keyA, "/v1/billing/records?limit=5", "application/x-ndjson")
		if h.Get("Fleetmeter-Records") == "5" {
			next = h.Get("Fleetmeter-Next-Cursor")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("billing records: no full page of 5 after 15 s: %v", h)
		}
	}
	ndjson := "application/x-ndjson"
	calls := []struct {
		path, spec string
		code       int
		accept     string // the media type asked for and validated (JSON when empty)
	}{
		{"/v1/billing/records?limit=5", "/v1/billing/records", 200, ndjson},
		{"/v1/billing/records?limit=1000&cursor=" + next, "/v1/billing/records", 200, ndjson},
		{"/v1/billing/records?format=jsonl&tenant=ta", "/v1/billing/records", 200, ndjson},
		{"/v1/billing/records?cursor=bm90LWEtY3Vyc29y", "/v1/billing/records", 400, ""},
		{"/v1/billing/records?limit=0", "/v1/billing/records", 400, ""},
		{"/v1/billing/records?format=xml", "/v1/billing/records", 400, ""},
		{"/v1/billing/records?tenant=tb", "/v1/billing/records", 403, ""},
		{"/v1/invoices?period=2026-10", "/v1/invoices", 200, ""},
		{"/v1/invoices?period=2026-10&tenant=tb", "/v1/invoices", 403, ""},
		{"/v1/invoices?period=October", "/v1/invoices", 400, ""},
		{"/v1/invoices/ta-202610", "/v1/invoices/{id}", 200, ""},
		{"/v1/invoices/tb-202610", "/v1/invoices/{id}", 404, ""},
		{"/v1/invoices/ta-2026", "/v1/invoices/{id}", 400, ""},
		{"/v1/usage?" + rng + "&window=day&group_by=device,zone,mobility,source,rat,slice,tariff,offer,charge,currency", "/v1/usage", 200, ""},
		{"/v1/usage?" + rng + "&window=hour&filter[zone]=home", "/v1/usage", 200, ""},
		{"/v1/usage?" + rng + "&group_by=plmn", "/v1/usage", 400, ""},
		{"/v1/devices?" + rng + "&limit=1", "/v1/devices", 200, ""},
		{"/v1/devices?" + rng + "&limit=1&cursor=ZDE", "/v1/devices", 200, ""},
		{"/v1/devices/top?" + rng, "/v1/devices/top", 200, ""},
		{"/v1/devices/active?" + rng, "/v1/devices/active", 200, ""},
		{"/v1/devices/active?" + rng + "&window=day", "/v1/devices/active", 200, ""},
		{"/v1/devices/d1/timeline?" + rng + "&limit=3", "/v1/devices/{device}/timeline", 200, ""},
		{"/v1/devices/nope/timeline?" + rng, "/v1/devices/{device}/timeline", 404, ""},
		{"/v1/periods?from=2026-09-01&to=2026-12-01", "/v1/periods", 200, ""},
		{"/v1/whoami", "/v1/whoami", 200, ""},
		{"/v1/periods?from=2026-09-01", "/v1/periods", 400, ""},
	}
	covered := map[string]bool{}
	for _, c := range calls {
		mt := c.accept
		if mt == "" || c.code != 200 {
			mt = "application/json"
		}
		code, hdr, body := fetch(t, ts, keyA, c.path, mt)
		if code != c.code {
			t.Errorf("%s: status %d, want %d: %s", c.path, code, c.code, body)
			continue
		}
		covered[c.spec] = true
		resp := s.get("paths", c.spec, "get", "responses", fmt.Sprint(code))
		if m, ok := resp.(map[string]any); ok && m["$ref"] != nil {
			resp = s.get(strings.Split(strings.TrimPrefix(m["$ref"].(string), "#/"), "/")...)
		}
		var schema any
		if rm, ok := resp.(map[string]any); ok {
			schema = spec(rm).get("content", mt, "schema")
			headers, _ := spec(rm).get("headers").(map[string]any)
			for name := range headers {
				if hdr.Get(name) == "" {
					t.Errorf("%s (%d): header %s declared but not sent", c.path, code, name)
				}
			}
		}
		if schema == nil {
			t.Errorf("%s: openapi.yaml declares no %s schema for %d", c.spec, mt, code)
			continue
		}
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, mt) {
			t.Errorf("%s: Content-Type %q, want %s", c.path, ct, mt)
		}
		docs := []string{body}
		if mt == ndjson { // a schema per line
			docs = strings.Split(strings.TrimSuffix(body, "\n"), "\n")
			if n := fmt.Sprint(len(docs)); body == "" || hdr.Get("Fleetmeter-Records") != n {
				t.Errorf("%s: %d lines, Fleetmeter-Records %q", c.path, len(docs), hdr.Get("Fleetmeter-Records"))
			}
		}
		for i, d := range docs {
			var v any
			if err := json.Unmarshal([]byte(d), &v); err != nil {
				t.Fatalf("%s: %v", c.path, err)
			}
			for _, e := range s.validate(schema, v, fmt.Sprintf("$[%d]", i)) {
				t.Errorf("%s (%d): %s", c.path, code, e)
			}
		}
	}
	var paths []string
	for p := range s.get("paths").(map[string]any) {
		paths = append(paths, p)
		if !covered[p] {
			t.Errorf("%s: in openapi.yaml but not exercised", p)
		}
	}
	sort.Strings(paths)
	// Every route the server has answers 401 without a key, so a route missing from the
	// file is one that answers 401 here; unknown paths are 404.
	routes := []string{"/v1/usage", "/v1/devices", "/v1/devices/top", "/v1/devices/active", "/v1/devices/x/timeline", "/v1/periods", "/v1/whoami",
		"/v1/billing/records", "/v1/invoices", "/v1/invoices/x-202610"}
	for _, p := range routes {
		if code, _ := get(t, ts, "", p); code != 401 {
			t.Errorf("%s: %d without a key", p, code)
		}
	}
	if len(paths) != len(routes) {
		t.Errorf("openapi.yaml paths %v: want the %d routes", paths, len(routes))
	}
}

// TestValidatorCatches makes sure the schema check above can fail.
func TestValidatorCatches(t *testing.T) {
	s := loadSpec(t)
	bad := map[string]any{"device": "d", "records": 1.0, "bytes": -1.0, "amount": "1.5", "first_seen": "x", "extra": 1.0}
	errs := s.validate(map[string]any{"$ref": "#/components/schemas/Device"}, bad, "$")
	if len(errs) < 4 {
		t.Fatalf("validator missed errors: %v", errs)
	}
}

// TestCSVMatchesJSON: with Accept: text/csv every endpoint the file declares CSV for
// answers text/csv whose header is the JSON rows' fields and whose rows are as many.
func TestCSVMatchesJSON(t *testing.T) {
	ts := newServer(t, limits(), fixtureA())
	rng := "from=2026-10-01&to=2026-11-01"
	for path, field := range map[string]string{
		"/v1/usage?" + rng + "&group_by=zone":            "rows",
		"/v1/devices?" + rng:                             "devices",
		"/v1/devices/top?" + rng:                         "devices",
		"/v1/devices/active?" + rng:                      "buckets",
		"/v1/devices/d1/timeline?" + rng + "&limit=1000": "records",
		"/v1/periods?" + rng:                             "periods",
	} {
		_, js := get(t, ts, keyA, path)
		var raw map[string]json.RawMessage
		_ = json.Unmarshal([]byte(js), &raw)
		var rows []map[string]any
		if err := json.Unmarshal(raw[field], &rows); err != nil || len(rows) == 0 {
			t.Fatalf("%s: %v %s", path, err, js)
		}
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+keyA)
		req.Header.Set("Accept", "text/csv")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("%s: %v %s", path, err, resp.Header.Get("Content-Type"))
		}
		var keys []string
		for k := range rows[0] {
			keys = append(keys, k)
		}
		header := append([]string{}, recs[0]...)
		sort.Strings(keys)
		sort.Strings(header)
		if strings.Join(keys, ",") != strings.Join(header, ",") || len(recs)-1 != len(rows) {
			t.Errorf("%s: csv header %v with %d rows, json fields %v with %d rows", path, recs[0], len(recs)-1, keys, len(rows))
		}
	}
}
