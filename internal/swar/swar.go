// Package swar holds the word-at-a-time helpers the JSON readers share: eight bytes of a
// line compared or scanned as one little-endian uint64.
package swar

// LowBytes masks the first n bytes of a little-endian word (all of it from 8 on, none
// from 0 down).
func LowBytes(n int) uint64 {
	switch {
	case n >= 8:
		return ^uint64(0)
	case n <= 0:
		return 0
	}
	return 1<<(8*n) - 1
}
