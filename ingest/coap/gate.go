package coap

import (
	"context"
	"net"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// The glue between go-coap and the session tables (sessions.go).

type sessionKey struct{}

// goCoAPCloseKey is where go-coap's UDP server keeps, in a connection's context, the
// function that ends the connection's session: cancel, close callbacks (which remove it
// from the server's map and from our table) and the end of its goroutine. Close alone
// leaves all that to go-coap's next periodic sweep (every 4 s) or the address's next
// datagram: under a flood, thousands of closed sessions would linger. The key is
// go-coap's (udp/server/server.go, closeKey, v3.8.0); TestUDPFloodBounded fails if it
// stops working, and Close still ends the session, only later.
const goCoAPCloseKey = "gocoapCloseConnection"

// freeUDP closes a plain UDP session and frees its state at once.
func freeUDP(cc *udpClient.Conn) func() {
	return func() {
		_ = cc.Close()
		if f, ok := cc.Context().Value(goCoAPCloseKey).(func()); ok {
			f()
		}
	}
}

// openUDP is go-coap's OnNewConn for plain UDP: it runs in the server's read loop when a
// datagram arrives from a new address, before the datagram is processed. A refused
// session is closed here; go-coap then drops the datagram (after trying once more).
func (c *Collector) openUDP(cc *udpClient.Conn) {
	s := c.udpPeers.open(time.Now(), freeUDP(cc))
	if s == nil {
		_ = cc.Close()
		return
	}
	cc.SetContextValue(sessionKey{}, s)
	cc.AddOnClose(func() { c.udpPeers.closed(s) })
}

// vetUDP is go-coap's request monitor for plain UDP: it runs in the read loop for every
// message of a session, before the message is queued for the session's handler. A
// verified session passes at the cost of a context lookup. An unverified one is verified
// by a request whose identity the handler would admit (dev mode), else charged the
// message's size; dropped is true when that evicted the session.
func (c *Collector) vetUDP(cc *udpClient.Conn, req *pool.Message) (dropped bool, err error) {
	s, _ := cc.Context().Value(sessionKey{}).(*session)
	if s == nil || s.state.Load() == stateVerified {
		return false, nil
	}
	if c.cfg.DevMode && req.Code() == codes.POST {
		var segs [4][]byte
		if n := uriPath(req, segs[:]); n == 3 && string(segs[0]) == "usage" {
			if reason, _ := admitDev(c.live.Load(), string(segs[1]), string(segs[2])); reason == "" {
				c.udpPeers.verify(s)
				return false, nil
			}
		}
	}
	return !c.udpPeers.charge(s, messageSize(req)), nil
}

// messageSize approximates the datagram a message came in: header, token, options, body.
func messageSize(m *pool.Message) int64 {
	n := int64(4 + len(m.Token()))
	for _, o := range m.Options() {
		n += int64(len(o.Value)) + 1
	}
	if b, err := m.BodySize(); err == nil {
		n += b
	}
	return n
}

// dtlsGate admits each connection pion's listener accepts (one per remote address that
// sent a handshake record) into the DTLS session table before go-coap starts a goroutine
// for its handshake. A pending handshake is an unverified session: evicted oldest first
// over a bound, closed at handshake_timeout. The cookie exchange (HelloVerifyRequest,
// pion's default, never disabled here) keeps a spoofed source from getting further: it
// never sees the cookie, so its handshake stays pending until evicted or timed out.
type dtlsGate struct {
	*coapNet.DTLSListener
	peers *sessionTable
}

func (g *dtlsGate) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	for {
		conn, err := g.DTLSListener.AcceptWithContext(ctx)
		if err != nil {
			return nil, err
		}
		dc, ok := conn.(*piondtls.Conn)
		if !ok { // not pion's: nothing to gate
			return conn, nil
		}
		s := g.peers.open(time.Now(), func() { _ = dc.Close() })
		if s == nil {
			_ = dc.Close()
			continue
		}
		return &gatedConn{Conn: dc, dc: dc, peers: g.peers, s: s}, nil
	}
}

// gatedConn is a DTLS connection with its session: verified once its handshake finished,
// forgotten when it closes.
type gatedConn struct {
	net.Conn
	dc    *piondtls.Conn
	peers *sessionTable
	s     *session
}

// HandshakeContext is called by go-coap before the connection is served, and again before
// every read and write (a no-op once done).
func (g *gatedConn) HandshakeContext(ctx context.Context) error {
	if g.s.state.Load() == stateVerified {
		return nil
	}
	if err := g.dc.HandshakeContext(ctx); err != nil {
		return err
	}
	g.peers.verify(g.s)
	return nil
}

func (g *gatedConn) Close() error {
	g.peers.closed(g.s)
	return g.Conn.Close()
}

// pskIdentity is the PSK identity of a served DTLS connection.
func pskIdentity(cc *udpClient.Conn) string {
	nc := cc.NetConn()
	if g, ok := nc.(*gatedConn); ok {
		nc = g.dc
	}
	if dc, ok := nc.(*piondtls.Conn); ok {
		if st, ok := dc.ConnectionState(); ok {
			return string(st.IdentityHint)
		}
	}
	return ""
}
