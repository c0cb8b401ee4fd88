package mqtt

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// readBuffer is the read buffer of a broker connection: a few hundred PUBLISH packets of
// a device's usage.
const readBuffer = 64 << 10

// bufferedConn reads the broker connection through a buffer. paho reads each packet's
// fixed header one byte at a time and then its body, each a read of its own from the
// connection: three or four system calls for every PUBLISH, a tenth of the mediator's
// CPU at the pipeline's maximum. Through the buffer one read takes whatever the socket
// holds. Only paho's reader goroutine reads (first the CONNACK, then every packet), so
// the buffer needs no lock; what it read ahead stays in it for the next read.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// buffered reports whether every broker is dialled by openBuffered: tcp and TLS ones.
// Websocket brokers are left to paho's own dialling (its frames are read whole anyway).
func buffered(brokers []string) bool {
	for _, b := range brokers {
		u, err := url.Parse(b)
		if err != nil {
			return false
		}
		switch u.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts":
		default:
			return false
		}
	}
	return true
}

// openBuffered dials a broker as paho does for tcp and TLS schemes (a SOCKS proxy from
// the environment included) and buffers the connection's reads.
func openBuffered(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		conn, err = proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts":
		if os.Getenv("all_proxy") == "" {
			conn, err = tls.DialWithDialer(dialer, "tcp", uri.Host, o.TLSConfig)
			break
		}
		var raw net.Conn
		if raw, err = proxy.FromEnvironment().Dial("tcp", uri.Host); err != nil {
			break
		}
		tc := tls.Client(raw, o.TLSConfig)
		if err = tc.Handshake(); err != nil {
			_ = raw.Close()
			break
		}
		conn = tc
	default:
		err = errors.New("mqtt: unknown protocol " + uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: conn, r: newConnReader(conn)}, nil
}

func newConnReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, readBuffer) }
