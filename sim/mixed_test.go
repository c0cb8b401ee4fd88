package sim_test

import (
	"bytes"
	"io/fs"
	"os"
	"testing"
	"time"

	"fleetmeter/cdr"
	"fleetmeter/deploy"
	"fleetmeter/ingest/payload"
	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
	"fleetmeter/sim"
)

// TestMixedFleet decodes every protocol's output of a few ticks with the decoders the
// collectors use and rates it with the example tariffs: each record lands under its
// vertical's tenant and prices without error, and the fleet replays identically.
func TestMixedFleet(t *testing.T) {
	set := exampleTariffs(t)
	eng := rating.NewEngine(set, rating.Options{})
	st := rating.NewState()
	p := payload.Parser{Limits: payload.DefaultLimits()}
	dec, err := cdr.NewDecoder(cdr.Config{Tenants: cdr.TenantMap{Rules: []cdr.TenantRule{{Tenant: sim.SliceTenant, DNN: sim.SliceDNN}}}})
	if err != nil {
		t.Fatal(err)
	}
	f := sim.NewMixedFleet(200, sim.DefaultMix, 3)
	byVertical := map[sim.Vertical]int{}
	for _, d := range f.Devices {
		byVertical[d.Vertical]++
	}
	if byVertical[sim.Meter] != 80 || byVertical[sim.Tracker] != 60 || byVertical[sim.Truck] != 40 || byVertical[sim.Slice] != 20 {
		t.Fatalf("mix %v, want 80/60/40/20", byVertical)
	}
	now := time.Now().Add(-time.Hour)
	perTenant := map[string]int{}
	ids := map[string]bool{} // every event id of the run, to check none repeats
	var recs []record.Usage
	total := 0
	for tick := range 4 {
		want := f.TickRecords(tick)
		b := f.Tick(tick, now.Add(time.Duration(tick)*time.Second))
		if b.Records != want {
			t.Fatalf("tick %d: %d records, TickRecords says %d", tick, b.Records, want)
		}
		recs = recs[:0]
		for _, m := range b.MQTT {
			d := f.Devices[m.Device]
			recs, err = p.Parse(payload.KindAuto, m.Payload, payload.Identity{Tenant: d.Tenant, Device: d.ID, Source: record.SourceMQTT}, now.UnixMilli(), recs)
			if err != nil || d.Protocol != sim.MQTT {
				t.Fatalf("mqtt %s: %v", d.ID, err)
			}
		}
		for _, m := range b.CoAP {
			d := f.Devices[m.Device]
			recs, err = p.Parse(payload.KindAuto, m.Payload, payload.Identity{Tenant: d.Tenant, Device: d.ID, Source: record.SourceCoAP}, now.UnixMilli(), recs)
			if err != nil || d.Protocol != sim.CoAP {
				t.Fatalf("coap %s: %v", d.ID, err)
			}
		}
		for _, post := range b.HTTP {
			for line := range bytes.Lines(post.Body) {
				u, err := record.ParseJSON(bytes.TrimSpace(line))
				if err != nil || u.Tenant != post.Tenant {
					t.Fatalf("http line %q: %v", line, err)
				}
				recs = append(recs, u)
			}
		}
		if b.CDR != nil {
			got, err := dec.Decode(b.CDR, nil)
			if err != nil || len(got) != len(b.CDRDevices) {
				t.Fatalf("cdr file: %d records for %d sessions, %v", len(got), len(b.CDRDevices), err)
			}
			for k, u := range got {
				if u.Device != f.Devices[b.CDRDevices[k]].ID || u.Tenant != sim.SliceTenant || !u.HasSlice || u.BytesUp == 0 {
					t.Fatalf("cdr record %d: %+v", k, u)
				}
			}
			recs = append(recs, got...)
		}
		if len(recs) != b.Records {
			t.Fatalf("tick %d: decoded %d records of %d", tick, len(recs), b.Records)
		}
		for i := range recs {
			if ids[recs[i].Tenant+"/"+recs[i].EventID] {
				t.Fatalf("event id %s repeats", recs[i].EventID)
			}
			ids[recs[i].Tenant+"/"+recs[i].EventID] = true
			if _, err := eng.Rate(st, &recs[i], nil); err != nil {
				t.Fatalf("rate %+v: %v", recs[i], err)
			}
			perTenant[recs[i].Tenant]++
		}
		total += len(recs)
	}
	for _, ten := range sim.Tenants {
		if perTenant[ten] == 0 {
			t.Errorf("no records for tenant %s: %v", ten, perTenant)
		}
	}
	// Rhythms: meters every 4 ticks, trucks and slices every 2, trackers every tick.
	if want := 80 + 60*4 + 40*2 + 20*2; total != want {
		t.Errorf("4 ticks: %d records, want %d", total, want)
	}
	// Deterministic: the same seed gives the same first tick.
	a, b := sim.NewMixedFleet(50, sim.DefaultMix, 9).Tick(0, now), sim.NewMixedFleet(50, sim.DefaultMix, 9).Tick(0, now)
	if !bytes.Equal(a.CDR, b.CDR) || len(a.MQTT) != len(b.MQTT) || !bytes.Equal(a.MQTT[0].Payload, b.MQTT[0].Payload) {
		t.Error("two fleets of the same seed differ")
	}
}

func exampleTariffs(t *testing.T) *rules.Set {
	t.Helper()
	dir := t.TempDir()
	sub, _ := fs.Sub(deploy.Tariffs, "tariffs")
	if err := os.CopyFS(dir, sub); err != nil {
		t.Fatal(err)
	}
	set, err := rules.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
