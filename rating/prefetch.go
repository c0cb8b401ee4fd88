//go:build amd64 || arm64

package rating

// prefetch asks the processor to bring the cache line holding addr closer without
// waiting for it (PREFETCHT0, PRFM PLDL1KEEP). It never faults, whatever addr is.
//
// A plain load would do the same but hold back every later instruction until its line
// arrives; RateBatch issues these for records ahead of the one it rates, so their misses
// overlap the rating of the records in between.
//
//go:noescape
func prefetch(addr uintptr)
