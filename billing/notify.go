package billing

import (
	"context"
	"encoding/json"
	"time"
)

// NotifyConfig is where invoice.finalized goes: a RabbitMQ exchange (AMQP 0-9-1).
type NotifyConfig struct {
	URL        string        `yaml:"url"`         // amqp://user:pass@host:5672/vhost; empty: off
	Exchange   string        `yaml:"exchange"`    // declared durable, type topic
	RoutingKey string        `yaml:"routing_key"` // default invoice.finalized
	Timeout    time.Duration `yaml:"timeout"`     // per attempt: connect, publish, confirm
}

// DefaultNotifyConfig returns the defaults (off).
func DefaultNotifyConfig() NotifyConfig {
	return NotifyConfig{Exchange: "fleetmeter.billing", RoutingKey: "invoice.finalized", Timeout: 10 * time.Second}
}

// Notifier publishes billing events.
type Notifier interface {
	Publish(ctx context.Context, ev Event) error
}

// Event is a billing notification.
type Event struct {
	Type string // routing key suffix and "type" field: invoice.finalized
	ID   string // unique per event: the document number (consumers dedupe on it)
	Body []byte // JSON
}

// FinalizedEvent is the invoice.finalized event of a final document: its number, tenant,
// period, kind, totals and the document itself.
func FinalizedEvent(inv Invoice) Event {
	body, _ := json.Marshal(struct {
		Type    string  `json:"type"`
		Invoice Invoice `json:"invoice"`
	}{"invoice.finalized", inv})
	return Event{Type: "invoice.finalized", ID: inv.Number, Body: body}
}
