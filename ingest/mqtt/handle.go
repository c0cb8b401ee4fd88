package mqtt

import (
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/ingest/payload"
	"fleetmeter/record"
)

// handle runs on paho's ordered router goroutine for every message. It checks the topic's
// (tenant, device) against the device registry, if any, parses and hands the records to
// the sink; the acknowledgement to the broker follows from the acker.
func (c *Collector) handle(_ paho.Client, m paho.Message) {
	received := time.Now()
	c.src.Received.Inc()
	select {
	case c.slots <- struct{}{}:
	default:
		// At the in-flight bound: stop reading from the broker until Kafka catches up.
		select {
		case c.slots <- struct{}{}:
		case <-c.stopping:
			return // unacknowledged, so the broker redelivers it
		}
	}
	c.src.InFlight.Inc()

	c.mu.Lock()
	defer c.mu.Unlock()
	tenant, device, kind, ok := c.parseTopic(m.Topic())
	if !ok {
		c.reject(tenant, device, record.ReasonBadTopic, "topic "+record.QuoteInput(m.Topic())+" is not "+
			c.cfg.TopicPrefix+"/<tenant>/<device>/usage[/json|/senml-json|/senml-cbor]", m, received)
		return
	}
	// The ids come from whoever may publish to the broker: checked before anything is
	// looked up, parsed or billed under them.
	if err := record.CheckTenantID(tenant); err != nil {
		c.reject(tenant, device, record.ReasonOf(err), err.Error(), m, received)
		return
	}
	if err := record.CheckDeviceID(device); err != nil {
		c.reject(tenant, device, record.ReasonOf(err), err.Error(), m, received)
		return
	}
	if a := c.adm.Current(); a != nil {
		if reason, detail := admit(a, tenant, device); reason != "" {
			// Acknowledged to the broker only once the rejection is written, like any other.
			c.reject(tenant, device, reason, detail, m, received)
			return
		}
	}
	id := payload.Identity{Tenant: tenant, Device: device, Source: record.SourceMQTT}
	var err error
	c.recs, err = c.parser.Parse(kind, m.Payload(), id, received.UnixMilli(), c.recs[:0])
	if err != nil {
		c.reject(tenant, device, record.ReasonOf(err), err.Error(), m, received)
		return
	}
	n := len(c.recs)
	c.sink.Enqueue(c.recs, func(err error) {
		c.acks <- ackItem{msg: m, received: received, records: n, err: err}
	})
}

// reject hands the sink the rejection of m and acknowledges m once the sink did. The
// rejection keeps tenant and device as the topic named them (written escaped when they
// are not valid ids, see record.Rejection) and a bounded copy of the payload.
func (c *Collector) reject(tenant, device, reason, detail string, m paho.Message, received time.Time) {
	r := record.Rejection{Source: record.SourceMQTT, Tenant: tenant, Device: device, Reason: reason,
		Detail: detail, Received: received.UnixMilli()}
	r.SetRaw(m.Payload())
	c.metrics.Rejected.WithLabelValues(r.Source, r.Reason).Inc()
	c.sink.EnqueueRejects([]record.Rejection{r}, func(err error) {
		c.acks <- ackItem{msg: m, received: received, err: err}
	})
}

// parseTopic splits <prefix>/<tenant>/<device>/usage[/<format>]. MQTT 3.1.1 (what paho v1
// speaks) has no content-type property, so the format is the optional last level; without
// it the payload is sniffed. '+' may not appear in an MQTT topic name (Mosquitto refuses
// to publish one), so the media types are spelled senml-json and senml-cbor; the '+'
// spellings are accepted too for brokers that let them through.
func (c *Collector) parseTopic(topic string) (tenant, device string, kind payload.Kind, ok bool) {
	rest, found := strings.CutPrefix(topic, c.cfg.TopicPrefix)
	if !found || !strings.HasPrefix(rest, "/") {
		return "", "", 0, false
	}
	tenant, rest, _ = strings.Cut(rest[1:], "/")
	device, rest, _ = strings.Cut(rest, "/")
	if tenant == "" || device == "" {
		return "", "", 0, false
	}
	level, format, hasFormat := strings.Cut(rest, "/")
	if level != "usage" {
		return tenant, device, 0, false
	}
	if !hasFormat {
		return tenant, device, payload.KindAuto, true
	}
	switch format {
	case "json":
		return tenant, device, payload.KindJSON, true
	case "senml-json", "senml+json", "senml":
		return tenant, device, payload.KindSenMLJSON, true
	case "senml-cbor", "senml+cbor", "cbor":
		return tenant, device, payload.KindSenMLCBOR, true
	}
	return tenant, device, 0, false
}
