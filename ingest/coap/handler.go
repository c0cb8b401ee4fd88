package coap

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"fleetmeter/ingest/payload"
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

type (
	responseWriter = responsewriter.ResponseWriter[*udpClient.Conn]
	poolMessage    = pool.Message
)

const (
	blockSZX             = blockwise.SZX1024
	blockTransferTimeout = 10 * time.Second
	maxBlockTransfers    = 4 // block-wise uploads a session reassembles at once (a retry may overlap an abandoned one)
)

// process wraps go-coap's per-request processing (deduplication, response cache,
// block-wise reassembly) to do two things it cannot be configured to do: refuse a
// block-wise upload with 4.13 as soon as it passes max_body (instead of buffering it
// whole), and answer a non-confirmable request with a non-confirmable response
// (go-coap sends CON).
func (c *Collector) process(req *pool.Message, cc *udpClient.Conn, handler config.HandlerFunc[*udpClient.Conn]) {
	reqType := req.Type()
	if c.block1TooLarge(req) {
		mid := req.MessageID()
		cc.ProcessReceivedMessageWithHandler(req, func(w *responseWriter, _ *pool.Message) {
			c.entityTooLarge(w)
			if reqType == message.Confirmable {
				w.Message().SetType(message.Acknowledgement)
				w.Message().SetMessageID(mid)
			} else {
				w.Message().SetType(message.NonConfirmable)
				w.Message().SetMessageID(cc.GetMessageID())
			}
		})
		return
	}
	cc.ProcessReceivedMessageWithHandler(req, func(w *responseWriter, r *pool.Message) {
		handler(w, r)
		if reqType == message.NonConfirmable && w.Message().IsModified() && w.Message().Type() == message.Confirmable {
			w.Message().SetType(message.NonConfirmable)
		}
	})
}

// block1TooLarge reports whether a Block1 upload already exceeds max_body with this block
// or announces (Size1) that it will.
func (c *Collector) block1TooLarge(req *pool.Message) bool {
	v, err := req.GetOptionUint32(message.Block1)
	if err != nil {
		return false
	}
	szx, num, _, err := blockwise.DecodeBlockOption(v)
	if err != nil {
		return false
	}
	size := num * szx.Size()
	if n, err := req.BodySize(); err == nil {
		size += n
	}
	if s1, err := req.GetOptionUint32(message.Size1); err == nil && int64(s1) > size {
		size = int64(s1)
	}
	return size > int64(c.cfg.MaxBody)
}

func (c *Collector) entityTooLarge(w *responseWriter) {
	c.metrics.Rejected.WithLabelValues(record.SourceCoAP, record.ReasonTooLarge).Inc()
	_ = w.SetResponse(codes.RequestEntityTooLarge, message.TextPlain, nil)
	w.Message().SetOptionUint32(message.Size1, uint32(c.cfg.MaxBody))
	w.Message().SetBody(bytes.NewReader([]byte(record.ReasonTooLarge + ": body above " + strconv.Itoa(c.cfg.MaxBody) + " bytes")))
}

// serve handles one (reassembled) request. It runs on the endpoint's own goroutine, so
// one endpoint's requests are handled, and handed to the sink, in order.
func (c *Collector) serve(w *responseWriter, r *pool.Message, secure bool) {
	var segs [4][]byte
	n := uriPath(r, segs[:])
	if n == 0 || string(segs[0]) != "usage" || (n != 1 && n != 3) {
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
		return
	}
	if r.Code() != codes.POST {
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		return
	}
	received := time.Now()
	c.src.Received.Inc()
	rej := record.Rejection{Source: record.SourceCoAP, Received: received.UnixMilli()}

	// Who is speaking: the DTLS identity, or in dev mode the path.
	reg := c.live.Load()
	var tenant, device string
	if secure {
		id, _ := w.Conn().Context().Value(pskIdentityKey{}).(string)
		d, ok := reg.ByPSKIdentity(id)
		if !ok { // the registry dropped it since the handshake
			rej.Reason, rej.Detail = record.ReasonUnknownIdentity, "PSK identity "+record.QuoteInput(id)+" is not in the device registry"
			c.refuse(w, r, codes.Unauthorized, rej)
			return
		}
		tenant, device = d.Tenant, d.Device
		if n == 3 && (string(segs[1]) != tenant || string(segs[2]) != device) {
			rej.Tenant, rej.Device = tenant, device
			rej.Reason = record.ReasonWrongIdentity
			rej.Detail = "identity " + record.QuoteInput(id) + " is " + tenant + "/" + device + ", not " +
				record.QuoteInput(string(segs[1])) + "/" + record.QuoteInput(string(segs[2]))
			c.refuse(w, r, codes.Forbidden, rej)
			return
		}
	} else {
		if !c.cfg.DevMode || n == 1 {
			// Unauthenticated and spoofable: counted, answered, not written to Kafka.
			c.metrics.Rejected.WithLabelValues(record.SourceCoAP, record.ReasonUnauthenticated).Inc()
			msg := "use coaps:// (DTLS PSK)"
			if c.cfg.DevMode {
				msg = "no identity: POST /usage/<tenant>/<device>, or use coaps://"
			}
			c.respond(w, codes.Unauthorized, record.ReasonUnauthenticated+": "+msg)
			return
		}
		tenant, device = string(segs[1]), string(segs[2])
		switch reason, detail := admitDev(reg, tenant, device); reason {
		case "":
		case record.ReasonUnauthenticated:
			c.metrics.Rejected.WithLabelValues(record.SourceCoAP, record.ReasonUnauthenticated).Inc()
			c.respond(w, codes.Unauthorized, record.ReasonUnauthenticated+": "+detail)
			return
		case record.ReasonUnknownDevice:
			rej.Tenant, rej.Device = tenant, device
			rej.Reason, rej.Detail = reason, detail
			c.refuse(w, r, codes.Unauthorized, rej)
			return
		default: // an id outside record's alphabet
			rej.Tenant, rej.Device = tenant, device
			rej.Reason, rej.Detail = reason, detail
			c.refuse(w, r, codes.BadRequest, rej)
			return
		}
	}
	rej.Tenant, rej.Device = tenant, device

	if !c.reserve() {
		c.backpressure(w)
		return
	}
	size, err := r.BodySize()
	if err != nil || size > int64(c.cfg.MaxBody) {
		c.release()
		rej.Reason, rej.Detail = record.ReasonTooLarge, "body of "+strconv.FormatInt(size, 10)+" bytes above max_body "+strconv.Itoa(c.cfg.MaxBody)
		c.refuse(w, r, codes.RequestEntityTooLarge, rej)
		return
	}
	kind := payload.KindAuto
	if cf, err := r.ContentFormat(); err == nil {
		if kind = payload.KindFromCoAPFormat(uint16(cf)); kind == payload.KindAuto {
			c.release()
			rej.Reason, rej.Detail = record.ReasonUnsupportedFormat, "Content-Format "+strconv.Itoa(int(cf))+" is not 50 (json), 110 (senml+json) or 112 (senml+cbor)"
			c.refuse(w, r, codes.UnsupportedMediaType, rej)
			return
		}
	}

	wk := c.workers.Get().(*worker)
	wk.body, err = readBody(r, wk.body, int(size))
	if err != nil {
		c.workers.Put(wk)
		c.release()
		c.respond(w, codes.InternalServerError, "cannot read body")
		return
	}
	id := payload.Identity{Tenant: tenant, Device: device, Source: record.SourceCoAP}
	wk.recs, err = wk.parser.Parse(kind, wk.body, id, rej.Received, wk.recs[:0])
	if err != nil {
		rej.Reason, rej.Detail = refusal(err)
		rej.SetRaw(wk.body)
		c.workers.Put(wk)
		c.release()
		c.refuse(w, r, codes.BadRequest, rej)
		return
	}
	nrec := len(wk.recs)
	if nrec == 0 { // an empty pack: nothing to hand on
		c.workers.Put(wk)
		c.release()
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		return
	}
	a := c.acks.Get().(*ack)
	a.records, a.received = nrec, received
	c.src.InFlight.Inc()
	c.sink.Enqueue(wk.recs, a.recordsDone)
	c.workers.Put(wk) // the sink copied the records
	if c.await(w, r, a) {
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	}
}

// ack is one request's wait for the sink: the channel its callback answers on, the
// callbacks (bound once) and the timer of ack_timeout. Pooled: a request costs no
// allocation for them. One goes back to the pool only once its callback has run, so a
// late callback of a request that timed out never answers another's wait.
type ack struct {
	done        chan error
	timer       *time.Timer
	records     int       // of the request, for the metrics
	received    time.Time // of the request, for the latency metric
	rejection   record.Rejection
	recordsDone func(error)
	rejectDone  func(error)
}

func newAck(c *Collector) *ack {
	a := &ack{done: make(chan error, 1), timer: time.NewTimer(time.Hour)}
	a.timer.Stop()
	a.recordsDone = func(err error) {
		c.src.InFlight.Dec()
		c.release()
		if err == nil {
			c.src.Accepted.Add(float64(a.records))
			c.src.AckLatency.Observe(time.Since(a.received).Seconds())
		}
		a.done <- err
	}
	a.rejectDone = func(err error) {
		c.src.InFlight.Dec()
		c.release()
		if err == nil {
			c.metrics.Rejected.WithLabelValues(a.rejection.Source, a.rejection.Reason).Inc()
		}
		a.done <- err
	}
	return a
}

// admitDev decides whether the dev path may report as (tenant, device): ids within
// record's alphabet (bad_tenant, bad_device, missing_identity), not a device the registry
// gives credentials (it authenticates, so an unauthenticated path naming it is an
// impersonation: unauthenticated, only counted like any unauthenticated request), and
// with a strict registry only a listed one (unknown_device). "" admits.
func admitDev(reg *registry.Registry, tenant, device string) (reason, detail string) {
	for _, err := range [...]error{record.CheckTenantID(tenant), record.CheckDeviceID(device)} {
		if err != nil {
			return refusal(err)
		}
	}
	if d, ok := reg.Lookup(tenant, device); ok {
		switch {
		case d.CoAPPSKIdentity != "":
			return record.ReasonUnauthenticated, "device " + tenant + "/" + device + " has a DTLS PSK in the device registry: use coaps://"
		case d.MQTTUsername != "":
			return record.ReasonUnauthenticated, "device " + tenant + "/" + device + " has MQTT credentials in the device registry: it reports over MQTT"
		}
		return "", ""
	}
	if err := reg.Admit(tenant, device); err != nil {
		return refusal(err)
	}
	return "", ""
}

// refusal is the reason code and detail of an input error.
func refusal(err error) (reason, detail string) {
	if inv := (*record.InvalidError)(nil); errors.As(err, &inv) {
		return record.ReasonOf(err), inv.Msg
	}
	return record.ReasonOf(err), err.Error()
}

// await waits for the sink's acknowledgement. On an error or timeout the device gets
// 5.03 and retries; the records may still reach Kafka, and their deterministic event ids
// make the retry's copies collapse downstream. It reports whether the sink acknowledged.
func (c *Collector) await(w *responseWriter, r *pool.Message, a *ack) bool {
	a.timer.Reset(c.cfg.AckTimeout)
	select {
	case err := <-a.done:
		a.timer.Stop() // before Put: no stale tick after Stop (Go 1.23 timers)
		a.rejection = record.Rejection{}
		c.acks.Put(a) // its callback has run: nothing answers on it any more
		if err == nil {
			return true
		}
		c.logger.Warn("coap: sink refused records", "err", err)
	case <-a.timer.C:
	case <-r.Context().Done(): // endpoint closed: nobody to answer
		a.timer.Stop()
		return false
	case <-c.stopping:
		a.timer.Stop()
	}
	c.backpressure(w)
	return false
}

// reserve takes an in-flight slot; false means the collector is saturated.
func (c *Collector) reserve() bool {
	if c.inflight.Add(1) > int64(c.cfg.MaxInFlight) {
		c.inflight.Add(-1)
		return false
	}
	return true
}

func (c *Collector) release() { c.inflight.Add(-1) }

func (c *Collector) backpressure(w *responseWriter) {
	_ = w.SetResponse(codes.ServiceUnavailable, message.TextPlain, nil)
	w.Message().SetOptionUint32(message.MaxAge, uint32(c.cfg.BackpressureMaxAge/time.Second))
}

// refuse answers code after the rejection rej is acknowledged. Its raw input is the body
// (record's SetRaw: the first 64 KiB, the length and SHA-256 of all of it) unless rej
// holds one already. The rejection takes an in-flight slot like records do: if none is
// free, or the sink fails, the device gets 5.03 and retries rather than a 4.xx whose
// record was lost.
func (c *Collector) refuse(w *responseWriter, r *pool.Message, code codes.Code, rej record.Rejection) {
	if rej.Raw == nil {
		rej.SetRaw(bodyBytes(r))
	}
	if !c.reserve() {
		c.backpressure(w)
		return
	}
	a := c.acks.Get().(*ack)
	a.rejection = rej
	c.src.InFlight.Inc()
	c.sink.EnqueueRejects([]record.Rejection{rej}, a.rejectDone)
	if c.await(w, r, a) {
		c.respond(w, code, rej.Reason+": "+rej.Detail)
	}
}

// respond sets code with a diagnostic payload (RFC 7252 5.5.2: no Content-Format).
func (c *Collector) respond(w *responseWriter, code codes.Code, diag string) {
	_ = w.SetResponse(code, message.TextPlain, nil)
	w.Message().SetBody(bytes.NewReader([]byte(diag)))
}

// uriPath fills segs with the Uri-Path segments and returns how many there are; more
// than len(segs) returns len(segs)+1 (no route has that many).
func uriPath(r *pool.Message, segs [][]byte) int {
	n := 0
	for _, o := range r.Options() {
		if o.ID != message.URIPath {
			continue
		}
		if n == len(segs) {
			return n + 1
		}
		segs[n] = o.Value
		n++
	}
	return n
}

func readBody(r *pool.Message, buf []byte, size int) ([]byte, error) {
	body := r.Body()
	if body == nil || size == 0 {
		return buf[:0], nil
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return buf[:0], err
	}
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	_, err := io.ReadFull(body, buf)
	return buf, err
}

// bodyBytes reads the body (bounded by max_body, or a single datagram).
func bodyBytes(r *pool.Message) []byte {
	body := r.Body()
	if body == nil {
		return nil
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(body)
	return b
}
