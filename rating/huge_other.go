//go:build unix && !linux

package rating

// adviseHuge does nothing where the kernel takes no huge page advice.
func adviseHuge([]byte) {}
