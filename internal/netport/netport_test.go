package netport

import (
	"net"
	"strconv"
	"testing"
)

// TestStable: the ports are outside the kernel's ephemeral range (read from /proc here as
// in the package), free for TCP and UDP, and distinct across calls; a port held by a
// listener is not Free.
func TestStable(t *testing.T) {
	lo, hi := ephemeral()
	seen := map[int]bool{}
	for range 50 {
		p, err := Stable()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p > 65535 || p >= lo && p <= hi || Ephemeral(p) {
			t.Fatalf("port %d: in the ephemeral range %d-%d or outside %d-65535", p, lo, hi, lowest)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		a := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("port %d not free for TCP: %v", p, err)
		}
		if Free(p) {
			t.Fatalf("port %d reported free while a listener holds it", p)
		}
		ln.Close()
		c, err := net.ListenPacket("udp", a)
		if err != nil {
			t.Fatalf("port %d not free for UDP: %v", p, err)
		}
		c.Close()
	}
}
