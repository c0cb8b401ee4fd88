package rating

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"fleetmeter/record"
)

// TestChangelogRebuildsState rates a stream batch by batch, keeping a second State up to
// date only from the changelog entries of each batch (as a restarted rater would), and
// checks that both rate the rest of the stream identically. Some batches are "aborted":
// their entries are dropped and the replica rebuilt from the entries kept so far, with the
// primary State replaced by a fresh replay too, as the rater does after an abort.
func TestChangelogRebuildsState(t *testing.T) {
	set := mustSet(t, "../deploy/tariffs")
	rng := rand.New(rand.NewPCG(7, 8))
	in := genInput(rng, 300, 6000)
	now := func() int64 { return 0 }
	e := NewEngine(set, Options{Now: now})

	type entry struct{ k, v []byte }
	var log []entry // committed entries, in order
	replay := func() *State {
		st := NewState()
		for _, en := range log {
			if err := st.Apply(en.k, en.v); err != nil {
				t.Fatal(err)
			}
		}
		return st
	}
	st := NewState()
	var out []record.Rated
	var buf []byte
	written, rated := 0, 0
	for base := 0; base < len(in); {
		n := 1 + rng.IntN(200)
		batch := in[base:min(base+n, len(in))]
		out = e.RateBatch(st, batch, out[:0], nil)
		var pending []entry
		buf = st.AppendChanges(buf[:0], func(k, v []byte) {
			pending = append(pending, entry{k, v})
			written += len(k) + len(v)
		})
		if rng.IntN(8) == 0 { // abort: nothing of the batch is kept, the state is reloaded
			st.Release()
			st = replay()
			continue
		}
		log = append(log, pending...)
		st.ClearDirty()
		buf = nil // the entries above keep referencing their bytes
		rated += len(batch)
		base += n
	}
	if d, p := st.Changes(); d != 0 || p != 0 {
		t.Fatalf("changes left after ClearDirty: %d devices, %d periods", d, p)
	}
	replica := replay()
	if replica.Devices() != st.Devices() {
		t.Fatalf("replica tracks %d devices, primary %d", replica.Devices(), st.Devices())
	}
	if fmt.Sprint(replica.Tally()) != fmt.Sprint(st.Tally()) {
		t.Fatalf("tallies differ:\n%v\n%v", replica.Tally(), st.Tally())
	}
	more := genInput(rand.New(rand.NewPCG(9, 10)), 300, 3000)
	var o1, o2 []record.Rated
	o1 = e.RateBatch(st, more, o1, nil)
	o2 = e.RateBatch(replica, more, o2, nil)
	if len(o1) != len(o2) {
		t.Fatalf("%d vs %d rated records after replay", len(o1), len(o2))
	}
	for i := range o1 {
		if o1[i] != o2[i] {
			t.Fatalf("record %d differs after replay:\n%+v\n%+v", i, o1[i], o2[i])
		}
	}
	if per := float64(written) / float64(rated); per > 200 {
		t.Errorf("changelog writes %.0f bytes per rated record, want it bounded by the batch", per)
	}
}

// TestChangelogWritesOnlyWhatChanged: a batch touching 3 devices of 10,000 writes 3
// device entries (and the periods it changed), not the partition.
func TestChangelogWritesOnlyWhatChanged(t *testing.T) {
	e := NewEngine(mustSet(t, "../deploy/tariffs"), Options{})
	st := NewState()
	in := genInput(rand.New(rand.NewPCG(1, 2)), 10_000, 30_000)
	e.RateBatch(st, in, nil, nil)
	st.ClearDirty()
	batch := []record.Usage{in[0], in[1], in[0], in[2]}
	for i := range batch {
		batch[i].EventID += "-again"
	}
	e.RateBatch(st, batch, nil, nil)
	devs := map[string]bool{}
	st.AppendChanges(nil, func(k, v []byte) {
		if k[0] == keyDevice {
			devs[string(k)] = true
		}
	})
	want := map[string]bool{}
	for _, u := range batch {
		want["d"+u.Tenant+"\x00"+u.Device] = true
	}
	if fmt.Sprint(devs) != fmt.Sprint(want) {
		t.Fatalf("changed devices %v, want %v", devs, want)
	}
}

func TestApplyRefusesDamage(t *testing.T) {
	st := NewState()
	e := NewEngine(mustSet(t, "../deploy/tariffs"), Options{})
	e.RateBatch(st, genInput(rand.New(rand.NewPCG(3, 3)), 5, 50), nil, nil)
	var ents [][2][]byte
	st.AppendChanges(nil, func(k, v []byte) { ents = append(ents, [2][]byte{k, v}) })
	k, v := ents[0][0], ents[0][1]
	for name, c := range map[string][2][]byte{
		"truncated":       {k, v[:len(v)-1]},
		"trailing":        {k, append(append([]byte{}, v...), 0)},
		"version":         {k, append([]byte{9}, v[1:]...)},
		"no separator":    {[]byte("dabc"), v},
		"unknown kind":    {append([]byte{'z'}, k[1:]...), v},
		"bad period":      {[]byte("at1\x002026-13"), []byte{1, 1, 0}},
		"bad legacy snap": {[]byte("usage/3"), []byte{1, 5}},
	} {
		if err := NewState().Apply(c[0], c[1]); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "state") {
			t.Errorf("%s: error %q does not say what it read", name, err)
		}
	}
}

// TestApplyLegacySnapshot: a changelog that starts with a whole-state snapshot of the
// first releases continues from it.
func TestApplyLegacySnapshot(t *testing.T) {
	e := NewEngine(mustSet(t, "../deploy/tariffs"), Options{Now: func() int64 { return 0 }})
	in := genInput(rand.New(rand.NewPCG(4, 4)), 50, 1000)
	st := NewState()
	e.RateBatch(st, in[:500], nil, nil)
	snap, _ := st.MarshalBinary()
	st.ClearDirty()
	e.RateBatch(st, in[500:800], nil, nil)
	re := NewState()
	if err := re.Apply([]byte("usage/0"), snap); err != nil {
		t.Fatal(err)
	}
	st.AppendChanges(nil, func(k, v []byte) {
		if err := re.Apply(k, v); err != nil {
			t.Fatal(err)
		}
	})
	o1 := e.RateBatch(st, in[800:], nil, nil)
	o2 := e.RateBatch(re, in[800:], nil, nil)
	for i := range o1 {
		if o1[i] != o2[i] {
			t.Fatalf("record %d differs", i)
		}
	}
}

// Records beyond the late tolerance are counted; those within it are not.
func TestLateCounted(t *testing.T) {
	set := mustSet(t, "../testdata/rating/late-tolerance")
	e := NewEngine(set, Options{})
	st := NewState()
	for _, u := range readUsage(t, "../testdata/rating/late-tolerance/input.jsonl") {
		if _, err := e.Rate(st, &u, nil); err != nil {
			t.Fatal(err)
		}
	}
	if st.Late() != 1 {
		t.Fatalf("late = %d, want 1 (l4, 15h behind with a 12h tolerance)", st.Late())
	}
}

// A device reporting a new location with every record keeps at most maxRuns of them, so
// its changelog entry stays bounded.
func TestDeviceEntryBounded(t *testing.T) {
	e := NewEngine(mustSet(t, "../deploy/tariffs"), Options{})
	st := NewState()
	ts := ms("2026-11-10T00:00:00Z")
	for i := range 5000 {
		u := record.Usage{EventID: fmt.Sprint(i), Tenant: "agrico", Device: "roamer", Source: "mqtt",
			StartTime: ts + int64(i)*1000, EndTime: ts + int64(i)*1000, Events: 1, Cell: fmt.Sprintf("cell-%d", i)}
		if _, err := e.Rate(st, &u, nil); err != nil {
			t.Fatal(err)
		}
	}
	var size int
	st.AppendChanges(nil, func(k, v []byte) {
		if k[0] == keyDevice {
			size = len(v)
		}
	})
	if size == 0 || size > 64<<10 {
		t.Fatalf("device entry of %d bytes after 5000 distinct cells, want it bounded (<64 KiB)", size)
	}
}
