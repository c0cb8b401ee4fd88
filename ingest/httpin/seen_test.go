package httpin

import (
	"strconv"
	"testing"
)

// TestIDSet checks the set against a map over requests of growing size, with repeats,
// so growth, reuse across requests and the generation tag are all exercised.
func TestIDSet(t *testing.T) {
	var s idSet
	for req, n := range []int{0, 1, 10, 300, 5000, 3, 1000} {
		s.reset()
		want := map[string]int{}
		for i := range n {
			id := "id-" + strconv.Itoa(i*7%(n/2+1)) // about half repeat
			if req%2 == 1 {
				id = "other-" + id // ids of the previous request are not present
			}
			first, added := s.add(id, i)
			w, dup := want[id]
			if added == dup || (dup && first != w) {
				t.Fatalf("request %d, add(%q, %d) = %d, %v; want first %d, present %v", req, id, i, first, added, w, dup)
			}
			if !dup {
				want[id] = i
			}
		}
		if s.n != len(want) {
			t.Fatalf("request %d: %d ids held, want %d", req, s.n, len(want))
		}
	}
}
