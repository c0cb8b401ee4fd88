package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"fleetmeter/cdr"
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
// byProto counts the usage records by the protocol they were sent over.
func expected(set *rules.Set, fleet *sim.Fleet, sent []sim.Sent) (out map[string]tally, byProto map[sim.Protocol]int, err error) {
	eng := rating.NewEngine(set, rating.Options{})
	st := rating.NewState()
	p := payload.Parser{Limits: payload.DefaultLimits()}
	out, byProto = map[string]tally{}, map[sim.Protocol]int{}
	var recs []record.Usage
	var rated []record.Rated
	dec, err := cdr.NewDecoder(cdr.Config{Tenants: SimulatedSlices()})
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sent {
		d := &fleet.Devices[s.Device]
		var err error
		switch s.Proto {
		case sim.MQTT, sim.CoAP:
			source := record.SourceMQTT
			if s.Proto == sim.CoAP {
				source = record.SourceCoAP
			}
			recs, err = p.Parse(payload.KindAuto, s.Payload, payload.Identity{Tenant: d.Tenant, Device: d.ID,
				Source: source}, time.Now().UnixMilli(), recs[:0])
		case sim.HTTP:
			recs, err = gatewayRecords(s.Tenant, s.Payload, recs[:0])
		case sim.CDR:
			recs, err = dec.Decode(s.Payload, recs[:0])
		default:
			err = fmt.Errorf("unknown protocol %v", s.Proto)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("simulated %s message of %s: %w", s.Proto, d.ID, err)
		}
		byProto[s.Proto] += len(recs)
		for i := range recs {
			rated, err = eng.Rate(st, &recs[i], rated[:0])
			if err != nil {
				return nil, nil, fmt.Errorf("rate simulated record %s: %w", recs[i].EventID, err)
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
	return out, byProto, nil
}

// SimulatedSlices maps the mixed fleet's 5G PDU sessions to their tenant, as the CDR
// collector must be configured for them.
func SimulatedSlices() cdr.TenantMap {
	return cdr.TenantMap{Rules: []cdr.TenantRule{{Tenant: sim.SliceTenant, DNN: sim.SliceDNN}}}
}

// gatewayRecords reads an HTTP gateway's JSON Lines body as the HTTP collector admits
// it: every line a canonical record of the API key's tenant, its event id in the
// collector's namespace.
func gatewayRecords(tenant string, body []byte, into []record.Usage) ([]record.Usage, error) {
	for line := range bytes.SplitSeq(bytes.TrimSpace(body), []byte("\n")) {
		u, err := record.ParseJSON(line)
		if err != nil {
			return into, err
		}
		if u.Tenant != tenant {
			return into, fmt.Errorf("line of tenant %q posted with %q's key", u.Tenant, tenant)
		}
		if ns := "http:" + tenant + ":"; !strings.HasPrefix(u.EventID, ns) {
			u.EventID = ns + u.EventID
		}
		u.Source = record.SourceHTTP
		into = append(into, u)
	}
	return into, nil
}

// Check is the standalone's self-check: it waits until ClickHouse holds as many usage
// records as were sent (or drain passes), then prints both sides per tenant, and what the
// usage API reports with each tenant's key; 0 when all three match exactly.
func Check(ctx context.Context, drain time.Duration, set *rules.Set, fleet *sim.Fleet, sent []sim.Sent,
	store *clickhouse.Store, api APIClient, w io.Writer) (int, error) {
	want, byProto, err := expected(set, fleet, sent)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(w, "sent usage records: mqtt %d, coap %d, http %d, cdr %d\n",
		byProto[sim.MQTT], byProto[sim.CoAP], byProto[sim.HTTP], byProto[sim.CDR])
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
