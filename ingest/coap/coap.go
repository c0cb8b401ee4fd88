// Package coap is the CoAP collector: devices POST usage to /usage over DTLS with a
// pre-shared key (the PSK identity names the device through the device registry), or in
// dev mode to /usage/<tenant>/<device> over plain UDP. A request is answered 2.04 only
// after the sink (Kafka) acknowledged its records; bad input is answered 4.xx after its
// rejection was acknowledged; when too many requests await acknowledgement, new ones get
// 5.03 with Max-Age so devices back off.
//
// Duplicates: a retransmitted request (same message id from the same endpoint) is never
// handed to the sink twice. go-coap drops a retransmission that arrives while the first
// copy is being handled and answers one arriving later from its per-endpoint response
// cache, which lives as long as the endpoint's state (Config.IdleTimeout).
package coap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// Collector is a CoAP collector.
type Collector struct {
	cfg       Config
	sink      ingest.Sink
	metrics   *ingest.Metrics
	logger    *slog.Logger
	live      *registry.Live
	watchFile bool // the registry came from cfg.RegistryFile: Run reloads it

	inflight atomic.Int64 // requests whose records or rejections await the sink
	workers  sync.Pool    // *worker
	acks     sync.Pool    // *ack
	stopping chan struct{}
	ready    chan struct{}
	healthy  atomic.Bool

	addrMu   sync.Mutex
	udpAddr  string
	dtlsAddr string

	src ingest.SourceMetrics // resolved once: the handler runs per request

	// Per-peer state of each listener (sessions.go); nil when the listener is off.
	udpPeers, dtlsPeers *sessionTable
}

// worker is one request's scratch space, pooled: parser buffers and the body.
type worker struct {
	parser payload.Parser
	recs   []record.Usage
	body   []byte
}

// New builds a collector; Run binds and serves. With cfg.RegistryFile (and no
// cfg.Registry) the registry is loaded here, so a broken file fails start-up.
func New(cfg Config, sink ingest.Sink, metrics *ingest.Metrics, logger *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("coap: a sink is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = ingest.NewMetrics(nil)
	}
	c := &Collector{cfg: cfg, sink: sink, metrics: metrics, logger: logger, live: cfg.Registry,
		stopping: make(chan struct{}), ready: make(chan struct{})}
	if c.live == nil && cfg.RegistryFile != "" {
		live, err := registry.LoadLive(cfg.RegistryFile)
		if err != nil {
			return nil, fmt.Errorf("coap.registry_file: %w", err)
		}
		c.live, c.watchFile = live, true
	}
	if c.live == nil {
		c.live = registry.NewLive(nil) // dev mode without a registry: every device admitted
	}
	if r := c.live.Load(); cfg.DevMode && !cfg.DevModeForce && r != nil && r.Strict() {
		return nil, errStrictDevMode
	}
	if cfg.Listen != "" {
		c.udpPeers = newSessionTable(cfg, cfg.UnverifiedIdleTimeout, udpSessionCharge)
	}
	if cfg.DTLSListen != "" {
		c.dtlsPeers = newSessionTable(cfg, cfg.HandshakeTimeout, dtlsSessionCharge)
	}
	c.workers.New = func() any { return &worker{parser: payload.Parser{Limits: payload.DefaultLimits()}} }
	c.acks.New = func() any { return newAck(c) }
	const src = record.SourceCoAP
	c.src = metrics.For(src)
	return c, nil
}

// Healthy reports whether the listeners are serving.
func (c *Collector) Healthy() bool { return c.healthy.Load() }

// Ready is closed once Run has bound its listeners (or failed to).
func (c *Collector) Ready() <-chan struct{} { return c.ready }

// Addr is the bound plain UDP address (host:port), empty before Run bound it or when off.
func (c *Collector) Addr() string {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	return c.udpAddr
}

// DTLSAddr is the bound DTLS address (host:port), empty before Run bound it or when off.
func (c *Collector) DTLSAddr() string {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	return c.dtlsAddr
}

// Registry is the device registry in force (nil: none).
func (c *Collector) Registry() *registry.Registry { return c.live.Load() }

// InFlight is the number of requests awaiting the sink's acknowledgement.
func (c *Collector) InFlight() int { return int(c.inflight.Load()) }

// Sessions reports the per-peer sessions of the plain UDP and the DTLS listener.
func (c *Collector) Sessions() (udp, dtls SessionStats) {
	return c.udpPeers.stats(), c.dtlsPeers.stats()
}

// Run binds the listeners and serves until ctx ends. Shutdown order: stop taking
// datagrams (close the listeners), release handlers still waiting for acknowledgements
// (their devices get no answer and retransmit to the next mediator; what they handed the
// sink is flushed by the sink's owner), then return.
func (c *Collector) Run(ctx context.Context) error {
	readyOnce := sync.OnceFunc(func() { close(c.ready) })
	defer readyOnce()
	var udpL *coapNet.UDPConn
	var dtlsL *coapNet.DTLSListener
	if c.cfg.Listen != "" {
		l, err := coapNet.NewListenUDP("udp", c.cfg.Listen)
		if err != nil {
			return fmt.Errorf("coap.listen: %w", err)
		}
		udpL = l
	}
	if c.cfg.DTLSListen != "" {
		l, err := coapNet.NewDTLSListener("udp", c.cfg.DTLSListen, coapNet.NewDTLSServerOptions(
			piondtls.WithPSK(c.pskFor),
			// Devices send their identity; the server offers no hint.
			piondtls.WithCipherSuites(pskSuites...),
		))
		if err != nil {
			if udpL != nil {
				_ = udpL.Close()
			}
			return fmt.Errorf("coap.dtls_listen: %w", err)
		}
		dtlsL = l
	}
	c.addrMu.Lock()
	if udpL != nil {
		c.udpAddr = udpL.LocalAddr().String()
	}
	if dtlsL != nil {
		c.dtlsAddr = dtlsL.Addr().String()
	}
	c.addrMu.Unlock()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	var udpSrv *udpServer.Server
	var dtlsSrv *dtlsServer.Server
	if udpL != nil {
		udpSrv = udp.NewServer(c.udpOptions(runCtx, false)...)
		wg.Go(func() {
			if err := udpSrv.Serve(udpL); err != nil {
				errc <- fmt.Errorf("coap: udp: %w", err)
			}
		})
	}
	if dtlsL != nil {
		dtlsSrv = dtls.NewServer(c.dtlsOptions(runCtx)...)
		wg.Go(func() {
			if err := dtlsSrv.Serve(&dtlsGate{DTLSListener: dtlsL, peers: c.dtlsPeers}); err != nil {
				errc <- fmt.Errorf("coap: dtls: %w", err)
			}
		})
	}
	wg.Go(func() { c.sweepPeers(runCtx) })
	if c.watchFile {
		wg.Go(func() {
			_ = c.live.Watch(runCtx, c.cfg.RegistryFile, c.cfg.RegistryReload, func(r *registry.Registry) {
				c.logger.Info("coap: device registry reloaded", "file", r.File(), "devices", r.Len(), "stamp", r.Stamp())
			}, func(err error) {
				c.logger.Error("coap: device registry", "err", err)
			})
		})
	}
	c.healthy.Store(true)
	readyOnce()
	c.logger.Info("coap listening", "udp", c.Addr(), "dtls", c.DTLSAddr(), "dev_mode", c.cfg.DevMode)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	c.healthy.Store(false)
	if udpSrv != nil {
		udpSrv.Stop()
	}
	if dtlsSrv != nil {
		dtlsSrv.Stop()
	}
	close(c.stopping)
	cancel()
	wg.Wait()
	return err
}

// pskSuites are the PSK cipher suites offered: those of RFC 7925 (CCM_8, the CoAP
// mandatory one) and RFC 6655, and the GCM/CBC ones OpenSSL and mbed TLS clients prefer.
var pskSuites = []piondtls.CipherSuiteID{
	piondtls.TLS_PSK_WITH_AES_128_CCM_8,
	piondtls.TLS_PSK_WITH_AES_128_CCM,
	piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	piondtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
}

// pskFor is the DTLS server's PSK callback: the client's identity selects the key.
func (c *Collector) pskFor(identity []byte) ([]byte, error) {
	d, ok := c.live.Load().ByPSKIdentity(string(identity))
	if !ok {
		c.metrics.Rejected.WithLabelValues(record.SourceCoAP, record.ReasonUnknownIdentity).Inc()
		return nil, fmt.Errorf("coap: unknown PSK identity %q", identity)
	}
	return d.CoAPPSK, nil
}

type pskIdentityKey struct{}

func (c *Collector) common(ctx context.Context) []any {
	return []any{
		options.WithContext(ctx),
		options.WithErrors(func(err error) { c.logger.Debug("coap", "err", err) }),
		options.WithMaxMessageSize(maxDatagram),
		options.WithBlockwise(true, blockSZX, blockTransferTimeout),
		// go-coap's default is 4096 concurrent uploads per session, each up to max_body.
		options.WithBlockwiseReceivingMessagesCacheMaxEntries(maxBlockTransfers),
		options.WithInactivityMonitor(c.cfg.IdleTimeout, func(cc *udpClient.Conn) { _ = cc.Close() }),
		options.WithProcessReceivedMessageFunc(c.process),
	}
}

func (c *Collector) udpOptions(ctx context.Context, _ bool) []udpServer.Option {
	var out []udpServer.Option
	for _, o := range c.common(ctx) {
		out = append(out, o.(udpServer.Option))
	}
	return append(out,
		options.WithHandlerFunc(func(w *responseWriter, r *poolMessage) { c.serve(w, r, false) }),
		options.WithOnNewConn(c.openUDP),
		options.WithRequestMonitor(c.vetUDP),
	)
}

func (c *Collector) dtlsOptions(ctx context.Context) []dtlsServer.Option {
	var out []dtlsServer.Option
	for _, o := range c.common(ctx) {
		out = append(out, o.(dtlsServer.Option))
	}
	return append(out,
		options.WithHandlerFunc(func(w *responseWriter, r *poolMessage) { c.serve(w, r, true) }),
		options.WithDTLSHandshakeTimeout(c.cfg.HandshakeTimeout),
		// The PSK identity is fixed for the session: read it once, not per request.
		options.WithOnNewConn(func(cc *udpClient.Conn) {
			cc.SetContextValue(pskIdentityKey{}, pskIdentity(cc))
		}),
	)
}

// sweepPeers closes unverified sessions past their age, until ctx ends.
func (c *Collector) sweepPeers(ctx context.Context) {
	every := min(c.cfg.UnverifiedIdleTimeout/2, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range []*sessionTable{c.udpPeers, c.dtlsPeers} {
				if p != nil {
					p.sweep(now)
				}
			}
		}
	}
}
