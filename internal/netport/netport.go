// Package netport picks loopback ports that a process can listen on again after a restart.
//
// A port the kernel hands out for ":0" comes from its ephemeral range, the same range it
// takes the local ports of outgoing connections from. A service that records such a port
// and listens on it again after a crash can find it taken by a client socket opened
// meanwhile (a device redialing the service while it is down, a connection to the
// database), and then fails to start with "address already in use". Stable picks ports
// below that range (or above it), where no outgoing connection is ever placed.
package netport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// next walks the candidate ports from a random start, so that concurrent processes
// (parallel tests, two pipelines on one machine) rarely try the same ones.
var next atomic.Int64

func init() { next.Store(rand.Int64N(1 << 30)) }

// lowest is the least port Stable picks: below it lie the well-known and registered
// ports other software is configured with.
const lowest = 20000

// ephemeral returns the kernel's range for outgoing connections' local ports
// (/proc/sys/net/ipv4/ip_local_port_range), Linux's default where it cannot be read.
func ephemeral() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}

// Stable returns a loopback port outside the kernel's ephemeral range that is free for
// both TCP and UDP now. Successive calls in one process return different ports.
func Stable() (int, error) {
	lo, hi := ephemeral()
	below := max(0, lo-lowest) // [lowest, lo)
	aboveFrom := max(hi+1, lowest)
	above := max(0, 65536-aboveFrom) // [aboveFrom, 65535]
	n := below + above
	for range min(n, 4000) {
		i := int(next.Add(1) % int64(n))
		p := lowest + i
		if i >= below {
			p = aboveFrom + i - below
		}
		if Free(p) {
			return p, nil
		}
	}
	return 0, errors.New("netport: no free loopback port outside the ephemeral range")
}

// Free reports whether 127.0.0.1:port can be listened on over both TCP and UDP.
func Free(port int) bool {
	a := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", a)
	if err != nil {
		return false
	}
	defer ln.Close()
	c, err := net.ListenPacket("udp", a)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Ephemeral reports whether port lies in the kernel's ephemeral range.
func Ephemeral(port int) bool {
	lo, hi := ephemeral()
	return port >= lo && port <= hi
}
