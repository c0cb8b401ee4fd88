package obs

import (
	"os"
	"runtime/debug"
)

// RaterGCPercent is the collector's growth target a rater process runs with: Go's
// default. Its large state (every device of its partitions) lives off the Go heap, so the
// heap holds only a batch's working set, most of it garbage by the batch's end. A target
// of 25% was meant to keep resident memory near the state plus one batch; at the
// pipeline's closed-loop maximum that heap was about 7 MB live, so 25% meant a collection
// for every 2 MB allocated, 14 a second, and the collector took a third of the rater's
// CPU. At 100% the rater spent 30% less CPU per record and its resident memory grew by
// 4 to 10 MB there (54-63 MB before, 66-72 MB with the allocations per message also cut,
// when it collects 3 times a second); a batch of the largest kind, 1 MiB of input, can
// hold twice its working set instead of 1.25 times.
const RaterGCPercent = 100

// SetGCPercent sets the collector's target to percent unless the operator chose one with
// the GOGC environment variable.
func SetGCPercent(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}
