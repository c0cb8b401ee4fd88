package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// lockedBuffer is a bytes.Buffer the mediator's goroutines may write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// SIGTERM while Kafka is down, with more records in hand than kgo buffers (so the
// producer's flush blocks in Produce): mediator run used to never finish. It must return
// once its drain deadline (30 s for the producer) is over, and the HTTP request whose
// records never reached Kafka must not be acknowledged (202).
func TestSIGTERMDuringKafkaOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the producer's 30 s drain deadline")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const key = "outage-test-key-acme-0001"
	t.Setenv("FLEETMETER_HTTP_KEYS", fmt.Sprintf("[{key: %s, tenant: acme}]", key))
	args := []string{"run", "--kafka.brokers", c.ListenAddrs()[0], "--kafka.partitions", "2",
		"--kafka.batch-records", "1", // one message per record: more than kgo's 1024 buffered
		"--mqtt.enabled=false", "--http.enabled", "--http.listen", addr, "--http.shutdown-timeout", "1s",
		"--listen", "", "--log-level", "error"}
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() { done <- dispatch(args, nil, io.Discard, &stderr) }()

	up := time.Now().Add(time.Minute)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case code := <-done:
			stderr.mu.Lock()
			t.Fatalf("mediator exited %d before serving: %s", code, stderr.b.String())
		default:
		}
		if time.Now().After(up) {
			t.Fatalf("HTTP ingest not listening on %s after a minute", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	c.Close() // the outage
	var body strings.Builder
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range 3000 {
		fmt.Fprintf(&body, `{"event_id":"http:acme:%d","tenant":"acme","device":"meter-%d","start_time":%q,"events":1}`+"\n", i, i%40, now)
	}
	status := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/usage", strings.NewReader(body.String()))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- err.Error()
			return
		}
		resp.Body.Close()
		status <- resp.Status
	}()
	time.Sleep(time.Second) // the request reaches the producer (not asserted: either way it must end)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("mediator run still draining 3 minutes after SIGTERM during a Kafka outage")
	}
	select {
	case s := <-status:
		if strings.HasPrefix(s, "202") {
			t.Fatalf("request acknowledged (%s) although Kafka was down", s)
		}
	case <-time.After(time.Minute):
		t.Fatal("the request got no answer and its connection stayed open after the mediator stopped")
	}
}
