package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPNotifier publishes events to a RabbitMQ exchange with publisher confirms.
//
// Delivery: Publish returns nil only once the broker confirmed (basic.ack) the message:
// the exchange routed it to every bound queue, which for a durable queue and a persistent
// message means it is on disk. Anything else (connection lost, broker restarting,
// basic.nack, no confirm within Timeout) drops the connection and publishes again, with
// backoff, until ctx ends. So an event may arrive twice (a confirm lost with the
// connection), never not at all while Publish keeps trying: consumers dedupe on
// message_id (the document number). Bind a durable queue to the exchange: a message no
// queue takes is confirmed and gone, as AMQP defines.
type AMQPNotifier struct {
	cfg NotifyConfig
	log *slog.Logger

	mu   sync.Mutex // one publication at a time: confirms are awaited in order
	conn *amqp.Connection
	ch   *amqp.Channel
}

// NewAMQPNotifier returns a notifier for cfg; it connects on first use.
func NewAMQPNotifier(cfg NotifyConfig, log *slog.Logger) (*AMQPNotifier, error) {
	var errs []error
	if cfg.URL == "" {
		errs = append(errs, errors.New("billing.notify.url: required"))
	} else if _, err := amqp.ParseURI(cfg.URL); err != nil {
		errs = append(errs, fmt.Errorf("billing.notify.url: %w", err))
	}
	if cfg.Exchange == "" {
		errs = append(errs, errors.New("billing.notify.exchange: required"))
	}
	if cfg.Timeout <= 0 {
		errs = append(errs, errors.New("billing.notify.timeout: must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.RoutingKey == "" {
		cfg.RoutingKey = "invoice.finalized"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AMQPNotifier{cfg: cfg, log: log}, nil
}

// Publish sends ev and waits for the broker's confirm, reconnecting as needed.
func (n *AMQPNotifier) Publish(ctx context.Context, ev Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := n.publishOnce(ctx, ev)
		if err == nil {
			return nil
		}
		n.reset()
		if ctx.Err() != nil {
			return fmt.Errorf("publish %s %s: %w (last: %v)", ev.Type, ev.ID, ctx.Err(), err)
		}
		n.log.Warn("billing notification not confirmed; retrying", "event", ev.Type, "id", ev.ID, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s %s: %w (last: %v)", ev.Type, ev.ID, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *AMQPNotifier) publishOnce(ctx context.Context, ev Event) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	if n.ch == nil || n.ch.IsClosed() {
		if err := n.connect(); err != nil {
			return err
		}
	}
	dc, err := n.ch.PublishWithDeferredConfirmWithContext(ctx, n.cfg.Exchange, n.cfg.RoutingKey, false, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    ev.ID,
		Type:         ev.Type,
		Timestamp:    time.Now(),
		Body:         ev.Body,
	})
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("broker refused the message (basic.nack)")
	}
	return nil
}

func (n *AMQPNotifier) connect() error {
	n.reset()
	conn, err := amqp.DialConfig(n.cfg.URL, amqp.Config{Dial: amqp.DefaultDial(n.cfg.Timeout), Properties: amqp.Table{"connection_name": "fleetmeter-billing"}})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil {
		err = ch.ExchangeDeclare(n.cfg.Exchange, "topic", true, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("open channel: %w", err)
	}
	n.conn, n.ch = conn, ch
	return nil
}

func (n *AMQPNotifier) reset() {
	if n.conn != nil {
		_ = n.conn.Close()
	}
	n.conn, n.ch = nil, nil
}

// Close closes the connection.
func (n *AMQPNotifier) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.reset()
	return nil
}
