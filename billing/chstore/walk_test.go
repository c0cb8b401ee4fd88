package chstore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"fleetmeter/billing"
)

// TestOrderKeysAndWalk: keys in (tenant, record_id) order over a few seconds come out of
// orderKeys in position order, cut at the limit, and keyWalker finds each kept key's slot
// (and no other key: cut ones, unknown ones) whatever order the rows come in (sorted runs
// as blocks give them, then backwards, then at random).
func TestOrderKeysAndWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 50 {
		n := 1 + rng.IntN(300)
		var keys []keyRow
		for i := range n {
			tenant := []string{"acme", "beta", "zeta"}[rng.IntN(3)]
			keys = append(keys, keyRow{pos: billing.Position{Seen: int64(100 + rng.IntN(4)), Tenant: tenant, RecordID: fmt.Sprintf("r%05d", i)}})
		}
		slices.SortFunc(keys, func(a, b keyRow) int {
			if keyLess(&a.pos, b.pos.Tenant, b.pos.RecordID) {
				return -1
			}
			return 1
		})
		limit := 1 + rng.IntN(n+5)
		want := slices.Clone(keys)
		slices.SortFunc(want, func(a, b keyRow) int {
			if a.pos.Less(b.pos) {
				return -1
			}
			return 1
		})
		want = want[:min(n, limit)]
		pk := orderKeys(slices.Clone(keys), limit)
		if len(pk.page) != len(want) || pk.byKey == nil {
			t.Fatalf("round %d: %d keys (byKey %v), want %d", round, len(pk.page), pk.byKey != nil, len(want))
		}
		slot := map[billing.Position]int{}
		for i := range want {
			if pk.page[i].pos != want[i].pos {
				t.Fatalf("round %d: key %d is %v, want %v", round, i, pk.page[i].pos, want[i].pos)
			}
			slot[want[i].pos] = i
		}
		rows := slices.Clone(keys)
		rows = append(rows, keyRow{pos: billing.Position{Tenant: "acme", RecordID: "zz"}}, keyRow{pos: billing.Position{Tenant: "a", RecordID: "r00001"}})
		orders := [][]keyRow{rows, slices.Clone(rows), slices.Clone(rows)}
		slices.Reverse(orders[1])
		rng.Shuffle(len(orders[2]), func(i, j int) { orders[2][i], orders[2][j] = orders[2][j], orders[2][i] })
		for o, order := range orders {
			w := &keyWalker{keys: pk.byKey, slot: pk.slot}
			for _, r := range order {
				got, ok := w.find(r.pos.Tenant, r.pos.RecordID)
				var wantSlot int
				var wantOK bool
				for p, s := range slot {
					if p.Tenant == r.pos.Tenant && p.RecordID == r.pos.RecordID {
						wantSlot, wantOK = s, true
					}
				}
				if ok != wantOK || got != wantSlot {
					t.Fatalf("round %d order %d: find(%s, %s) = %d, %v; want %d, %v", round, o, r.pos.Tenant, r.pos.RecordID, got, ok, wantSlot, wantOK)
				}
			}
		}
	}
}
