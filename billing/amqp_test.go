package billing_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"fleetmeter/billing"
	"fleetmeter/internal/netport"
)

// rabbit is a real RabbitMQ (the Debian rabbitmq-server package) on free loopback ports
// with its data in a temp dir and its own epmd, so it touches nothing of the machine's.
type rabbit struct {
	t                  *testing.T
	dir, node          string
	port, dist, epmdPt int
	cmd                *exec.Cmd
	exited             chan struct{}
}

const rabbitBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// freePort is a loopback port below the ephemeral range: the broker restarts on it while
// the publisher redials, and a redial's local port must not take it meanwhile.
func freePort(t *testing.T) int {
	p, err := netport.Stable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startRabbit(t *testing.T) *rabbit {
	t.Helper()
	if _, err := os.Stat(rabbitBin); err != nil {
		t.Fatalf("this test needs the Debian rabbitmq-server package (scripts/deps.sh installs it): %v", err)
	}
	r := &rabbit{t: t, dir: t.TempDir(), port: freePort(t), dist: freePort(t), epmdPt: freePort(t)}
	r.node = fmt.Sprintf("fmbill%d_%d@localhost", os.Getpid(), r.port)
	if err := os.WriteFile(filepath.Join(r.dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Our own epmd on a free port, stopped at the end.
	epmd := exec.Command("epmd", "-port", fmt.Sprint(r.epmdPt), "-daemon")
	if out, err := epmd.CombinedOutput(); err != nil {
		t.Fatalf("epmd: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("epmd", "-port", fmt.Sprint(r.epmdPt), "-kill").Run() })
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *rabbit) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.port) }

func (r *rabbit) start() {
	t := r.t
	cmd := exec.Command(rabbitBin)
	cmd.Env = append(os.Environ(),
		"HOME="+r.dir, // the Erlang cookie
		"RABBITMQ_NODENAME="+r.node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", r.port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", r.dist),
		fmt.Sprintf("ERL_EPMD_PORT=%d", r.epmdPt),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(r.dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(r.dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(r.dir, "none"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(r.dir, "none-env"),
		"RABBITMQ_PID_FILE="+filepath.Join(r.dir, "rabbit.pid"),
	)
	out, err := os.Create(filepath.Join(r.dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rabbitmq-server: %v", err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(r.exited) }()
	// Ready once it takes an AMQP connection.
	for {
		select {
		case <-r.exited:
			log, _ := os.ReadFile(filepath.Join(r.dir, "stdout.log"))
			t.Fatalf("rabbitmq-server exited while starting:\n%s", log)
		default:
		}
		if c, err := amqp.Dial(r.url()); err == nil {
			c.Close()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop stops the broker as an operator would (SIGTERM: the script runs rabbitmqctl
// stop), then makes sure nothing of its process group is left.
func (r *rabbit) stop() {
	if r.cmd == nil {
		return
	}
	pg := -r.cmd.Process.Pid
	_ = syscall.Kill(pg, syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(90 * time.Second):
		r.t.Errorf("rabbitmq-server did not stop on SIGTERM; killing it")
	}
	_ = syscall.Kill(pg, syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// TestAMQPNotifierBrokerRestart publishes invoice.finalized events one after another
// while the broker is stopped and started again midway; every Publish that returned nil
// is in the durable queue afterwards (duplicates allowed, deduped on message id).
func TestAMQPNotifierBrokerRestart(t *testing.T) {
	r := startRabbit(t)
	ctx := context.Background()

	// The consumer's durable queue, bound before anything is published.
	conn, err := amqp.Dial(r.url())
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	cfg := billing.DefaultNotifyConfig()
	cfg.URL, cfg.Timeout = r.url(), 5*time.Second
	if err := ch.ExchangeDeclare(cfg.Exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("billing-test", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("billing-test", "invoice.*", cfg.Exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	n, err := billing.NewAMQPNotifier(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	const total, restartAt = 60, 20
	restarted := make(chan struct{})
	published := make(chan string, total)
	errs := make(chan error, 1)
	go func() {
		for i := range total {
			if i == restartAt {
				restarted <- struct{}{} // the broker goes down now ...
				<-restarted             // ... and is back
			}
			inv := billing.Invoice{Number: fmt.Sprintf("acme-202610-C%d", i+1), Tenant: "acme", Period: "2026-10", Status: "final"}
			pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
			err := n.Publish(pctx, billing.FinalizedEvent(inv))
			cancel()
			if err != nil {
				errs <- err
				return
			}
			published <- inv.Number
		}
		close(published)
	}()
	<-restarted
	r.stop()
	// Publish while it is down: the notifier retries until it is back.
	go func() { restarted <- struct{}{} }()
	r.start()

	var sent []string
	for {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id, ok := <-published:
			if ok {
				sent = append(sent, id)
				continue
			}
		}
		break
	}
	if len(sent) != total {
		t.Fatalf("published %d of %d", len(sent), total)
	}

	conn, err = amqp.Dial(r.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ = conn.Channel()
	got := map[string]int{}
	for {
		d, ok, err := ch.Get("billing-test", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if d.Type != "invoice.finalized" || d.ContentType != "application/json" {
			t.Errorf("message %s: type %q content type %q", d.MessageId, d.Type, d.ContentType)
		}
		got[d.MessageId]++
	}
	for _, id := range sent {
		if got[id] == 0 {
			t.Errorf("%s was confirmed but is not in the queue", id)
		}
	}
	t.Logf("%d events confirmed, %d distinct in the queue after the restart", len(sent), len(got))
}
