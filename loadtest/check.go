package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"text/tabwriter"
	"time"

	"fleetmeter/clickhouse"
	"fleetmeter/ingest/payload"
	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
	"fleetmeter/sim"
)

// tally is a per-tenant count and sum of usage charges.
type tally struct {
	Records uint64
	Amount  record.Micros
}

// expected rates what the simulator sent, offline, with the same parser and engine the
// pipeline uses, in per-device order: the totals ClickHouse must hold.
func expected(set *rules.Set, fleet *sim.Fleet, sent []sim.Sent) (map[string]tally, error) {
	eng := rating.NewEngine(set, rating.Options{})
	st := rating.NewState()
	p := payload.Parser{Limits: payload.DefaultLimits()}
	out := map[string]tally{}
	var recs []record.Usage
	var rated []record.Rated
	for _, s := range sent {
		d := &fleet.Devices[s.Device]
		var err error
		recs, err = p.Parse(payload.KindAuto, s.Payload, payload.Identity{Tenant: d.Tenant, Device: d.ID,
			Source: record.SourceMQTT}, time.Now().UnixMilli(), recs[:0])
		if err != nil {
			return nil, fmt.Errorf("simulated payload of %s: %w", d.ID, err)
		}
		for i := range recs {
			rated, err = eng.Rate(st, &recs[i], rated[:0])
			if err != nil {
				return nil, fmt.Errorf("rate simulated record %s: %w", recs[i].EventID, err)
			}
			for _, r := range rated {
				if r.Charge == record.ChargeUsage {
					t := out[r.Tenant]
					t.Records++
					t.Amount += r.Amount
					out[r.Tenant] = t
				}
			}
		}
	}
	return out, nil
}

// Check is the standalone's self-check: it waits until ClickHouse holds as many usage
// records as were sent (or drain passes), then prints both sides per tenant, and what the
// usage API reports with each tenant's key; 0 when all three match exactly.
func Check(ctx context.Context, drain time.Duration, set *rules.Set, fleet *sim.Fleet, sent []sim.Sent,
	store *clickhouse.Store, api APIClient, w io.Writer) (int, error) {
	want, err := expected(set, fleet, sent)
	if err != nil {
		return 1, err
	}
	var wantN uint64
	for _, t := range want {
		wantN += t.Records
	}
	deadline := time.Now().Add(drain)
	var got map[string]tally
	for {
		got, err = usageTotals(ctx, store)
		if err != nil {
			return 1, err
		}
		var n uint64
		for _, t := range got {
			n += t.Records
		}
		if n >= wantN || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	tenants := map[string]bool{}
	for t := range want {
		tenants[t] = true
	}
	for t := range got {
		tenants[t] = true
	}
	names := make([]string, 0, len(tenants))
	for t := range tenants {
		names = append(names, t)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tenant\tsent records\tsent amount\tclickhouse records\tclickhouse amount\tapi records\tapi amount\t")
	code := 0
	for _, t := range names {
		mark := ""
		viaAPI, err := api.usage(ctx, t)
		if err != nil {
			return 1, fmt.Errorf("usage api, tenant %s: %w", t, err)
		}
		if want[t] != got[t] || viaAPI != got[t] {
			mark, code = "  MISMATCH", 1
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%s\t%s\n", t, want[t].Records, want[t].Amount, got[t].Records, got[t].Amount,
			viaAPI.Records, viaAPI.Amount, mark)
	}
	tw.Flush()
	if code == 0 {
		fmt.Fprintf(w, "check ok: %d usage records from %d devices, every one in ClickHouse exactly once, and the usage api agrees\n",
			wantN, len(fleet.Devices))
	} else {
		fmt.Fprintln(w, "check FAILED: ClickHouse totals differ from what was sent")
	}
	return code, nil
}

// usageTotals reads per-tenant usage charges from ClickHouse as billing reads them
// (duplicates collapsed). Device fees are left out: provisional fees depend on the order
// devices first appear, which the simulator does not fix.
func usageTotals(ctx context.Context, store *clickhouse.Store) (map[string]tally, error) {
	ts, err := store.Totals(ctx, clickhouse.Filter{Charge: record.ChargeUsage})
	if err != nil {
		return nil, err
	}
	out := map[string]tally{}
	for _, t := range ts {
		x := out[t.Tenant]
		x.Records += t.Records
		x.Amount += t.Amount
		out[t.Tenant] = x
	}
	return out, nil
}

// APIClient reads a tenant's usage totals through the usage API with the tenant's key, as
// the tenant's own tools would.
type APIClient struct {
	Addr string
	Keys map[string]string // tenant -> key
}

func (c APIClient) usage(ctx context.Context, tenant string) (tally, error) {
	key, ok := c.Keys[tenant]
	if !ok {
		return tally{}, nil // not a simulated tenant: nothing to read with
	}
	now := time.Now().UTC()
	q := url.Values{"window": {"month"}, "filter[charge]": {record.ChargeUsage},
		"from": {now.AddDate(0, 0, -1).Format("2006-01-02")}, "to": {now.AddDate(0, 0, 2).Format("2006-01-02")}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+"/v1/usage?"+q.Encode(), nil)
	if err != nil {
		return tally{}, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return tally{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return tally{}, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var ans struct {
		Rows []struct {
			Records uint64 `json:"records"`
			Amount  string `json:"amount"`
		} `json:"rows"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return tally{}, err
	}
	var t tally
	for _, r := range ans.Rows {
		m, err := record.ParseMicros(r.Amount)
		if err != nil {
			return tally{}, err
		}
		t.Records += r.Records
		t.Amount += m
	}
	return t, nil
}
