package obs

import (
	"os"
	"runtime/debug"
)

// RaterGCPercent is the collector's growth target a rater process runs with. Its large
// state (every device of its partitions) lives off the Go heap, so the heap holds only a
// batch's working set, and most of that is garbage by the batch's end: a target of 25%
// keeps resident memory near the state plus one batch, for a few more short collections.
const RaterGCPercent = 25

// SetGCPercent sets the collector's target to percent unless the operator chose one with
// the GOGC environment variable.
func SetGCPercent(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}
