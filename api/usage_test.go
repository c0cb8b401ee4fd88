package api_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"fleetmeter/record"
)

type usageAnswer struct {
	Tenant string              `json:"tenant"`
	Rows   []map[string]any    `json:"rows"`
	Next   *string             `json:"next_cursor"`
	Extra  map[string][]string `json:"-"`
}

// TestUsageExact: per day and zone, the API's sums equal the first ratings of the
// fixture (the re-rated copy counts neither its zone nor its amount).
func TestUsageExact(t *testing.T) { bothModes(t, testUsageExact) }

func testUsageExact(t *testing.T, final bool) {
	ts := newServerMode(t, final, limits(), fixtureA(), fixtureB())
	code, body := get(t, ts, keyA, "/v1/usage?from=2026-10-01&to=2026-11-01&window=day&group_by=zone&filter[charge]=usage")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var got usageAnswer
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	type key struct{ day, zone string }
	want := map[key][2]int64{} // records, amount
	for _, r := range fixtureA()[:30] {
		k := key{r.Start().Format("2006-01-02T00:00:00Z"), r.Zone}
		w := want[k]
		w[0]++
		w[1] += int64(r.Amount)
		want[k] = w
	}
	if len(got.Rows) != len(want) {
		t.Fatalf("rows: got %d want %d: %s", len(got.Rows), len(want), body)
	}
	for _, row := range got.Rows {
		k := key{row["bucket"].(string), row["zone"].(string)}
		w, ok := want[k]
		if !ok {
			t.Fatalf("unexpected row %v", row)
		}
		if row["records"].(float64) != float64(w[0]) || row["amount"] != record.Micros(w[1]).String() {
			t.Errorf("%v: got %v records %v, want %d %s", k, row["records"], row["amount"], w[0], record.Micros(w[1]))
		}
		if row["currency"] != "EUR" {
			t.Errorf("currency %v", row["currency"])
		}
	}
}

// TestUsageWholeMonth: one bucket, every charge: usage + fee + adjustment, duplicates once.
func TestUsageWholeMonth(t *testing.T) { bothModes(t, testUsageWholeMonth) }

func testUsageWholeMonth(t *testing.T, final bool) {
	ts := newServerMode(t, final, limits(), fixtureA(), fixtureB())
	_, body := get(t, ts, keyA, "/v1/usage?from=2026-10-01&to=2026-11-01&window=month&group_by=charge")
	var got usageAnswer
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, r := range got.Rows {
		sums[r["charge"].(string)] = fmt.Sprint(r["records"], " ", r["amount"], " ", r["bucket"])
	}
	var usage int64
	for _, r := range fixtureA()[:30] {
		usage += int64(r.Amount)
	}
	want := map[string]string{
		"usage":      fmt.Sprint(30, " ", record.Micros(usage), " 2026-10-01T00:00:00Z"),
		"device_fee": "1 0.100000 2026-10-01T00:00:00Z",
		"adjustment": "1 0.100000 2026-10-01T00:00:00Z",
	}
	if fmt.Sprint(sums) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", sums, want)
	}
}

// TestUsageCSV: Accept: text/csv gives the same figures as CSV.
func TestUsageCSV(t *testing.T) { bothModes(t, testUsageCSV) }

func testUsageCSV(t *testing.T, final bool) {
	ts := newServerMode(t, final, limits(), fixtureA())
	code, body := get(t, ts, keyA, "/v1/usage?from=2026-10-01&to=2026-11-01&window=month&group_by=mobility&filter[charge]=usage", "text/csv")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if lines[0] != "bucket,mobility,currency,records,bytes_up,bytes_down,duration_ms,events,amount" {
		t.Fatalf("header %q", lines[0])
	}
	var mob, stat int64
	for i, r := range fixtureA()[:30] {
		if i%2 == 0 {
			stat += int64(r.Amount)
		} else {
			mob += int64(r.Amount)
		}
	}
	want := []string{
		fmt.Sprintf("2026-10-01T00:00:00Z,mobile,EUR,15,1500,15000,0,30,%s", record.Micros(mob)),
		fmt.Sprintf("2026-10-01T00:00:00Z,stationary,EUR,15,1500,15000,0,30,%s", record.Micros(stat)),
	}
	sort.Strings(lines[1:])
	if strings.Join(lines[1:], "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines[1:], "\n"), strings.Join(want, "\n"))
	}
}

// TestBadInput: malformed or oversized requests are 400s that say what is wrong.
func TestBadInput(t *testing.T) {
	lim := limits()
	lim.MaxBuckets = 100
	ts := newServer(t, lim, fixtureA())
	cases := []struct{ path, want string }{
		{"/v1/usage?from=2026-10-01&to=2026-11-01&group_by=imei", `"valid":["device","zone","mobility","source","rat","slice","tariff","offer","charge","currency"]`},
		{"/v1/usage?from=2026-10-01&to=2026-11-01&filter[plmn]=262-01", `unknown dimension in \"filter[plmn]\"`},
		{"/v1/usage?from=2026-10-01&to=2026-11-01&colour=red", `unknown parameter \"colour\"`},
		{"/v1/usage?from=yesterday&to=2026-11-01", `from: \"yesterday\" is not an RFC 3339 time`},
		{"/v1/usage?to=2026-11-01", `from: required`},
		{"/v1/usage?from=2026-11-01&to=2026-10-01", `to: must be after from`},
		{"/v1/usage?from=2025-01-01&to=2026-11-01&window=month", `longer than 400 days`},
		{"/v1/usage?from=2026-10-01&to=2026-11-01&window=hour", `744 hour buckets in the range, more than the 100 allowed`},
		{"/v1/usage?from=2026-10-01&to=2026-11-01&window=week", `window: unknown \"week\"`},
		{"/v1/devices?from=2026-10-01&to=2026-11-01&limit=0", `limit: want 1..1000`},
		{"/v1/devices?from=2026-10-01&to=2026-11-01&cursor=!!!", `cursor: malformed`},
		{"/v1/devices/active?from=2026-10-01&to=2026-11-01&window=hour", `"valid":["day","month"]`},
	}
	for _, c := range cases {
		code, body := get(t, ts, keyA, c.path)
		if code != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s: got %d %s, want 400 containing %s", c.path, code, body, c.want)
		}
	}
}

// TestAuth: no key, unknown key: 401; operators name a tenant; tenants may not.
func TestAuth(t *testing.T) {
	ts := newServer(t, limits(), fixtureA())
	path := "/v1/periods?from=2026-10-01&to=2026-11-01"
	for _, c := range []struct {
		key, path string
		code      int
		want      string
	}{
		{"", path, 401, "missing or unknown API key"},
		{"nope", path, 401, "missing or unknown API key"},
		{keyA + "x", path, 401, "missing or unknown API key"},
		{keyOp, path, 400, "tenant: required with an operator key"},
		{keyOp, path + "&tenant=ta", 200, `"period":"2026-10"`},
		{keyA, path + "&tenant=ta", 200, `"period":"2026-10"`},
		{keyA, path + "&tenant=tb", 400, "a tenant key sees only its own tenant"},
	} {
		code, body := get(t, ts, c.key, c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("key %q %s: got %d %s", c.key, c.path, code, body)
		}
	}
}

// TestPeriodsAndDevices: closed period with exact fees, the tier reached, devices with
// last seen, a paginated timeline.
func TestPeriodsAndDevices(t *testing.T) { bothModes(t, testPeriodsAndDevices) }

func testPeriodsAndDevices(t *testing.T, final bool) {
	ts := newServerMode(t, final, limits(), fixtureA(), fixtureB())
	_, body := get(t, ts, keyA, "/v1/periods?from=2026-10-01&to=2026-12-01")
	for _, w := range []string{`"status":"closed"`, `"fees_exact":true`, `"provisional_fees":"0.100000"`, `"adjustment":"0.100000"`, `"fees":"0.200000"`, `"devices":2`} {
		if !strings.Contains(body, w) {
			t.Errorf("periods: %s lacks %s", body, w)
		}
	}
	_, body = get(t, ts, keyB, "/v1/periods?from=2026-10-01&to=2026-12-01")
	if !strings.Contains(body, `"status":"open"`) || !strings.Contains(body, `"fees_exact":false`) {
		t.Errorf("tb periods: %s", body)
	}
	_, body = get(t, ts, keyA, "/v1/devices/active?from=2026-10-01&to=2026-11-01")
	if !strings.Contains(body, `"devices":2`) {
		t.Errorf("active: %s", body)
	}
	_, body = get(t, ts, keyA, "/v1/devices?from=2026-10-01&to=2026-11-01&limit=1")
	var page struct {
		Devices []map[string]any `json:"devices"`
		Next    *string          `json:"next_cursor"`
	}
	_ = json.Unmarshal([]byte(body), &page)
	if len(page.Devices) != 1 || page.Devices[0]["device"] != "d1" || page.Next == nil {
		t.Fatalf("devices page 1: %s", body)
	}
	if page.Devices[0]["last_seen"] != "2026-10-03T08:00:00Z" {
		t.Errorf("d1 last seen %v", page.Devices[0]["last_seen"])
	}
	// Amounts are the first ratings' (the re-rated copy of a-04 does not count).
	var d1, usage record.Micros
	for i, r := range fixtureA()[:30] {
		usage += r.Amount
		if i%2 == 0 {
			d1 += r.Amount
		}
	}
	d1 += 100_000 // its device fee
	if page.Devices[0]["amount"] != d1.String() || page.Devices[0]["records"] != 15.0 {
		t.Errorf("d1: %v, want amount %s over 15 records", page.Devices[0], d1)
	}
	if _, b := get(t, ts, keyA, "/v1/periods?from=2026-10-01&to=2026-12-01"); !strings.Contains(b, `"usage_amount":"`+usage.String()+`"`) {
		t.Errorf("periods: %s, want usage_amount %s", b, usage)
	}
	if _, b := get(t, ts, keyA, "/v1/devices/top?from=2026-10-01&to=2026-11-01&limit=1"); !strings.Contains(b, `"device":"d1","records":16,"bytes":16500,"amount":"`+d1.String()+`"`) {
		t.Errorf("top: %s, want d1 with %s", b, d1)
	}
	_, body = get(t, ts, keyA, "/v1/devices?from=2026-10-01&to=2026-11-01&limit=1&cursor="+*page.Next)
	page.Next = nil
	_ = json.Unmarshal([]byte(body), &page)
	if len(page.Devices) != 1 || page.Devices[0]["device"] != "d2" || page.Next != nil {
		t.Fatalf("devices page 2: %s", body)
	}
	// Timeline of d1 in pages of 4: every usage record of d1 once plus its fee, in order.
	var ids []string
	cursor := ""
	for n := 0; n < 10; n++ {
		_, body = get(t, ts, keyA, "/v1/devices/d1/timeline?from=2026-10-01&to=2026-11-01&limit=4"+cursor)
		var tl struct {
			Records []map[string]any `json:"records"`
			Next    *string          `json:"next_cursor"`
		}
		if err := json.Unmarshal([]byte(body), &tl); err != nil {
			t.Fatal(body)
		}
		for _, r := range tl.Records {
			ids = append(ids, r["record_id"].(string))
		}
		if tl.Next == nil {
			break
		}
		cursor = "&cursor=" + *tl.Next
	}
	want := []string{"a-00", "fee:ta:d1:2026-10"}
	for i := 2; i < 30; i += 2 {
		want = append(want, fmt.Sprintf("a-%02d", i))
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("timeline\ngot  %v\nwant %v", ids, want)
	}
}

// bothModes runs f with usage queries collapsing copies by GROUP BY record_id and by FINAL.
func bothModes(t *testing.T, f func(t *testing.T, final bool)) {
	for _, final := range []bool{false, true} {
		t.Run(fmt.Sprintf("final=%v", final), func(t *testing.T) { f(t, final) })
	}
}
