package main

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"fleetmeter/ingest"
	"fleetmeter/ingest/payload"
	"fleetmeter/record"
)

// ingestHook takes each PUBLISH off the embedded broker and hands it to the Kafka sink,
// acknowledging it to the device only once Kafka acknowledged it. Nothing is routed to
// subscribers and nothing waits in a broker queue, so there is no queue to overflow and
// nothing the broker acknowledged lives only in its memory.
//
// The guarantee, step by step:
//  1. OnPublish runs on the connection's read goroutine, after the ACL admitted the topic.
//     It first takes a slot (per connection, and over all connections); when none is
//     free it waits, so the broker stops reading that connection and TCP pushes back on
//     the device. Nothing is dropped for want of room.
//  2. It parses the payload and hands the records, or the rejection, to the sink, then
//     returns ErrRejectPacket: mochi neither acknowledges nor routes the message.
//  3. The sink calls back once Kafka acknowledged the records (or refused them). The
//     connection's acker writes PUBACK (QoS 1) or PUBREC (QoS 2; mochi completes PUBREL
//     and PUBCOMP from the session) in the order the messages arrived: a message is
//     acknowledged only when it and every earlier message of the connection are in Kafka.
//  4. A refusal closes the connection and nothing after it is acknowledged: the device
//     resends what it holds unacknowledged when it reconnects.
//
// A crash at any step loses only messages no device was told are safe; deterministic
// event ids make a resent message harmless downstream.
type ingestHook struct {
	mochi.HookBase
	srv     *mochi.Server
	prefix  string
	sink    ingest.Sink
	perConn int
	m       *brokerMetrics
	log     *slog.Logger
	limits  payload.Limits

	slots    chan struct{} // one per message handed over and not yet acknowledged
	conns    sync.Map      // *mochi.Client -> *deviceConn
	stopping chan struct{}
	stopOnce sync.Once
	sinkLog  atomic.Int64 // unix nanos of the last "Kafka refused" log line
}

func newIngestHook(srv *mochi.Server, cfg brokerConfig, m *brokerMetrics, logger *slog.Logger) *ingestHook {
	return &ingestHook{srv: srv, prefix: cfg.TopicPrefix, sink: cfg.Sink, perConn: cfg.MaxInFlightPerClient, m: m,
		log: logger, limits: payload.DefaultLimits(), slots: make(chan struct{}, cfg.MaxInFlight),
		stopping: make(chan struct{})}
}

func (h *ingestHook) ID() string { return "fleetmeter-ingest" }

func (h *ingestHook) Provides(b byte) bool { return b == mochi.OnPublish || b == mochi.OnDisconnect }

// deviceConn is one connection's messages between receipt and acknowledgement.
type deviceConn struct {
	cl *mochi.Client

	parser payload.Parser  // the read goroutine's
	recs   []record.Usage  // the read goroutine's
	room   chan struct{}   // per-connection slots
	wake   chan struct{}   // cap 1: the acker has work
	ready  []*pendingMsg   // the acker's
	failed bool            // the acker's: Kafka refused a message, nothing more is acknowledged
	mu     sync.Mutex      // guards the fields below
	queue  []*pendingMsg   // in arrival order
	ids    map[uint16]bool // packet ids in queue
	closed bool            // the connection ended; the acker exits once queue is empty
}

// pendingMsg is one message awaiting Kafka's acknowledgement.
type pendingMsg struct {
	c        *deviceConn
	id       uint16
	qos      byte
	received time.Time
	records  int
	done     bool // guarded by c.mu
	err      error
}

// complete is the sink's callback, on a Kafka client goroutine: it must not block.
func (p *pendingMsg) complete(err error) {
	c := p.c
	c.mu.Lock()
	p.done, p.err = true, err
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (h *ingestHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	received := time.Now()
	h.m.received.Inc()
	c := h.conn(cl)
	if !h.acquire(c) {
		return pk, packets.ErrRejectPacket // stopping: unacknowledged, so the device resends it
	}
	tenant, device, kind, ok := usageTopic(h.prefix, pk.TopicName)
	qos := pk.FixedHeader.Qos
	var msg *pendingMsg
	c.mu.Lock()
	reused := qos > 0 && c.ids[pk.PacketID]
	if ok && !reused {
		if qos > 0 {
			c.ids[pk.PacketID] = true
		}
		msg = &pendingMsg{c: c, id: pk.PacketID, qos: qos, received: received}
		c.queue = append(c.queue, msg)
	}
	c.mu.Unlock()
	if msg == nil {
		// The ACL admitted only usage topics; a packet id still awaiting its PUBACK must
		// not be reused (MQTT-2.2.1-3). Either way the client is broken: disconnect it.
		h.release(c)
		_ = h.srv.DisconnectClient(cl, packets.ErrProtocolViolation)
		return pk, packets.ErrRejectPacket
	}
	id := payload.Identity{Tenant: tenant, Device: device, Source: record.SourceMQTT}
	var err error
	c.recs, err = c.parser.Parse(kind, pk.Payload, id, received.UnixMilli(), c.recs[:0])
	if err != nil {
		r := record.Rejection{Source: record.SourceMQTT, Tenant: tenant, Device: device, Reason: record.ReasonOf(err),
			Detail: err.Error(), Received: received.UnixMilli()}
		r.SetRaw(pk.Payload)
		h.m.rejected.WithLabelValues(r.Reason).Inc()
		h.sink.EnqueueRejects([]record.Rejection{r}, msg.complete)
		return pk, packets.ErrRejectPacket
	}
	msg.records = len(c.recs)
	h.sink.Enqueue(c.recs, msg.complete)
	return pk, packets.ErrRejectPacket
}

// conn returns cl's state, starting its acker on the first message.
func (h *ingestHook) conn(cl *mochi.Client) *deviceConn {
	if v, ok := h.conns.Load(cl); ok {
		return v.(*deviceConn)
	}
	c := &deviceConn{cl: cl, room: make(chan struct{}, h.perConn), wake: make(chan struct{}, 1), ids: map[uint16]bool{}}
	c.parser.Limits = h.limits
	h.conns.Store(cl, c) // only cl's read goroutine gets here
	go h.acker(c)
	return c
}

// acquire takes a slot of c and one over all connections, waiting while none is free.
func (h *ingestHook) acquire(c *deviceConn) bool {
	select {
	case c.room <- struct{}{}:
	default:
		select {
		case c.room <- struct{}{}:
		case <-h.stopping:
			return false
		}
	}
	select {
	case h.slots <- struct{}{}:
	default:
		select {
		case h.slots <- struct{}{}:
		case <-h.stopping:
			<-c.room
			return false
		}
	}
	h.m.inFlight.Inc()
	return true
}

func (h *ingestHook) release(c *deviceConn) {
	<-c.room
	<-h.slots
	h.m.inFlight.Dec()
}

// acker acknowledges c's messages in arrival order as Kafka acknowledges them, until the
// connection ended and every message handed over was answered.
func (h *ingestHook) acker(c *deviceConn) {
	for range c.wake {
		c.mu.Lock()
		n := 0
		for n < len(c.queue) && c.queue[n].done {
			delete(c.ids, c.queue[n].id)
			n++
		}
		c.ready = append(c.ready[:0], c.queue[:n]...)
		clear(c.queue[:n])
		c.queue = c.queue[n:]
		exit := c.closed && len(c.queue) == 0
		c.mu.Unlock()
		for i, p := range c.ready {
			h.answer(c, p)
			c.ready[i] = nil
			h.release(c)
		}
		if exit {
			h.conns.Delete(c.cl)
			return
		}
	}
}

func (h *ingestHook) answer(c *deviceConn, p *pendingMsg) {
	if p.err != nil {
		if !c.failed {
			c.failed = true
			_ = h.srv.DisconnectClient(c.cl, packets.ErrUnspecifiedError)
		}
		if now := time.Now().UnixNano(); now-h.sinkLog.Load() > int64(5*time.Second) {
			h.sinkLog.Store(now)
			h.log.Error("mqtt: Kafka refused a message; closing the connection unacknowledged so the device resends",
				"client", c.cl.ID, "err", p.err)
		}
		return
	}
	h.m.accepted.Add(float64(p.records))
	if c.failed || p.qos == 0 {
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: p.id,
		Created: time.Now().Unix()}
	if p.qos == 2 {
		// mochi answers the device's PUBREL from the session's in-flight PUBREC.
		ack.FixedHeader.Type = packets.Pubrec
		if c.cl.State.Inflight.Set(ack) {
			atomic.AddInt64(&h.srv.Info.Inflight, 1)
		}
	}
	if err := c.cl.WritePacket(ack); err == nil {
		h.m.ackLatency.Observe(time.Since(p.received).Seconds())
	}
}

func (h *ingestHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	v, ok := h.conns.Load(cl)
	if !ok {
		return
	}
	c := v.(*deviceConn)
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// stop makes OnPublish take no more messages.
func (h *ingestHook) stop() { h.stopOnce.Do(func() { close(h.stopping) }) }

// drain waits up to d for every message handed over to be answered.
func (h *ingestHook) drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for len(h.slots) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
