package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/internal/netport"
	"fleetmeter/record"
)

// broker is a real Mosquitto on a loopback port, restartable on the same port.
type broker struct {
	t    testing.TB
	bin  string
	conf string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startBroker runs Mosquitto with unbounded queues and in-flight windows (what the
// collector's README asks of production brokers); listener holds the listener's settings.
func startBroker(t testing.TB, listener string) *broker {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs a real Mosquitto")
	}
	bin := ""
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		t.Fatal("mosquitto is not installed: run `make deps` (scripts/deps.sh)")
	}
	dir := t.TempDir()
	b := &broker{t: t, bin: bin, conf: filepath.Join(dir, "mosquitto.conf"), port: freePort(t)}
	body := fmt.Sprintf("listener %d 127.0.0.1\n%s\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n",
		b.port, listener)
	if err := os.WriteFile(b.conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			t.Logf("--- mosquitto output:\n%s", b.output())
		}
	})
	return b
}

func (b *broker) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

func (b *broker) start() {
	b.t.Helper()
	b.mu.Lock()
	b.cmd = exec.Command(b.bin, "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	b.done = make(chan struct{})
	if err := b.cmd.Start(); err != nil {
		b.mu.Unlock()
		b.t.Fatalf("start mosquitto: %v", err)
	}
	done, cmd := b.done, b.cmd
	b.mu.Unlock()
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", b.addr(), 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			b.t.Fatalf("mosquitto exited: %s", b.output())
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("mosquitto did not listen on %s: %s", b.addr(), b.output())
}

// kill stops this broker process (SIGKILL: no goodbye to clients).
func (b *broker) kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (b *broker) output() string { return b.out.String() }

// freePort is a loopback port below the ephemeral range: a broker restarted on it while
// the collector redials must find it free.
func freePort(t testing.TB) int {
	t.Helper()
	p, err := netport.Stable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// memSink records what collectors hand it and acknowledges at once, or fails calls while
// refuse returns true.
type memSink struct {
	mu     sync.Mutex
	recs   []record.Usage
	rejs   []record.Rejection
	refuse func() bool
}

func (s *memSink) Enqueue(recs []record.Usage, done func(error)) {
	if s.refuse != nil && s.refuse() {
		done(fmt.Errorf("refused"))
		return
	}
	s.mu.Lock()
	s.recs = append(s.recs, recs...)
	s.mu.Unlock()
	done(nil)
}

func (s *memSink) EnqueueRejects(rejs []record.Rejection, done func(error)) {
	s.mu.Lock()
	s.rejs = append(s.rejs, rejs...)
	s.mu.Unlock()
	done(nil)
}

func (s *memSink) snapshot() ([]record.Usage, []record.Rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record.Usage(nil), s.recs...), append([]record.Rejection(nil), s.rejs...)
}

func (s *memSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// runCollector starts a collector until the test ends and waits until it is subscribed.
func runCollector(t *testing.T, cfg Config, sink *memSink) *Collector {
	t.Helper()
	c, err := New(cfg, sink, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "collector "+cfg.ClientID+" subscribed", c.Healthy)
	return c
}

func testConfig(b *broker, clientID string) Config {
	cfg := DefaultConfig()
	cfg.Brokers = []string{"tcp://" + b.addr()}
	cfg.ClientID = clientID
	return cfg
}

// publisher connects a paho client for publishing test messages.
func publisher(t testing.TB, brokerURL string, configure func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).
		SetAutoReconnect(false)
	if configure != nil {
		configure(opts)
	}
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}

func publish(t testing.TB, cl paho.Client, topic string, qos byte, payload []byte) {
	t.Helper()
	if tok := cl.Publish(topic, qos, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}
