package mqtt

import (
	"bytes"
	"net"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// countingConn is a connection whose reads come from a buffer, counted.
type countingConn struct {
	net.Conn
	src   *bytes.Reader
	reads int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.src.Read(p)
}

// Through bufferedConn paho's reader takes a stream of PUBLISH packets in a few reads
// of the connection, not three or more a packet, and reads them unchanged.
func TestBufferedConnReadsPacketsInFewReads(t *testing.T) {
	var wire bytes.Buffer
	const n = 200
	for i := range n {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.Qos, p.MessageID, p.TopicName = 1, uint16(i+1), "fleetmeter/acme/meter-1/usage"
		p.Payload = bytes.Repeat([]byte{'x'}, 150+i) // some past 127 bytes: two-byte lengths
		if err := p.Write(&wire); err != nil {
			t.Fatal(err)
		}
	}
	for _, buffer := range []bool{false, true} {
		raw := &countingConn{src: bytes.NewReader(wire.Bytes())}
		var conn net.Conn = raw
		if buffer {
			conn = &bufferedConn{Conn: raw, r: newConnReader(raw)}
		}
		for i := range n {
			cp, err := packets.ReadPacket(conn)
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			p, ok := cp.(*packets.PublishPacket)
			if !ok || p.MessageID != uint16(i+1) || len(p.Payload) != 150+i {
				t.Fatalf("packet %d read as %v", i, cp)
			}
		}
		t.Logf("buffered %v: %d reads for %d packets", buffer, raw.reads, n)
		if buffer && raw.reads > 1+wire.Len()/readBuffer+1 {
			t.Errorf("buffered: %d reads of the connection for %d packets (%d bytes)", raw.reads, n, wire.Len())
		}
		if !buffer && raw.reads < 3*n {
			t.Errorf("unbuffered: %d reads for %d packets; the test no longer shows what the buffer saves", raw.reads, n)
		}
	}
}
