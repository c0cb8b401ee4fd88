package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/internal/chserver/chtest"
	"fleetmeter/record"
)

const e2eTariff = `id: e2e-acme
version: "1"
currency: EUR
tenants: [acme]
period: month
zones:
  - name: home
    plmns: ["262-01"]
  - name: world
    default: true
rates:
  data:
    unit: MB
    prices:
      home: {"*": 0.0125}
      "*": {"*": 0.05}
  events:
    unit: event
    prices: {"*": {"*": 0.001}}
`

// wantMicros is the price of message i under e2eTariff, worked out independently of the
// rating engine: i KB of data and one event. At home: 0.0125/MB x 0.001*i MB + 0.001 =
// (125*i + 10000) x 1e-7, rounded half-to-even to 1e-6; roaming (every 10th message):
// 0.05/MB x 0.001*i MB + 0.001 = (500*i + 10000) x 1e-7, always a whole micro.
func wantMicros(i int) int64 {
	if i%10 == 0 {
		return int64(500*i+10000) / 10
	}
	v := int64(125*i + 10000)
	q, r := v/10, v%10
	if r > 5 || (r == 5 && q%2 == 1) {
		q++
	}
	return q
}

// TestMQTTToClickHouse sends QoS 1 messages with mosquitto_pub through a real Mosquitto
// to the mediator, kfake, the rater, the loader and a real ClickHouse, then checks the exact count
// and sum of amounts with clickhouse-client, and that a malformed payload reached topic
// rejected with a reason while the pipeline kept running.
func TestMQTTToClickHouse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pub := tool(t, "mosquitto_pub")
	chClient := tool(t, "clickhouse-client")
	kcat := tool(t, "kcat")

	mqttAddr := startMosquitto(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]
	ch := chtest.StartForTest(t)

	rulesDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(rulesDir, "acme.yaml"), []byte(e2eTariff), 0o600); err != nil {
		t.Fatal(err)
	}
	medListen, raterListen, loadListen := addr(freePort(t)), addr(freePort(t)), addr(freePort(t))
	med := start(t, filepath.Join(binDir, "mediator"), "run", "--kafka.brokers", kafkaAddr,
		"--mqtt.brokers", "tcp://"+mqttAddr, "--mqtt.client-id", "e2e-mediator", "--listen", medListen)
	rater := start(t, filepath.Join(binDir, "rater"), "run", "--kafka.brokers", kafkaAddr,
		"--instance", "e2e-1", "--rules", rulesDir, "--listen", raterListen)
	loader := start(t, filepath.Join(binDir, "rater"), "load", "--kafka.brokers", kafkaAddr,
		"--clickhouse.addr", ch.NativeAddr(), "--listen", loadListen)
	waitReady(t, "http://"+medListen+"/readyz", med)
	waitReady(t, "http://"+raterListen+"/readyz", rater)
	waitReady(t, "http://"+loadListen+"/readyz", loader)

	const n, devices = 400, 4
	now := time.Now().UnixMilli()
	lines := make([]strings.Builder, devices)
	var wantSum int64
	for i := 1; i <= n; i++ {
		plmn := "262-01"
		if i%10 == 0 {
			plmn = "310-260"
		}
		fmt.Fprintf(&lines[i%devices], `{"seq":%d,"ts":%d,"bytes_up":%d,"events":1,"plmn":"%s"}`+"\n", i, now+int64(i), 1000*i, plmn)
		wantSum += wantMicros(i)
	}
	host, port, _ := strings.Cut(mqttAddr, ":")
	for d := 0; d < devices; d++ {
		if d == 2 {
			// A malformed payload mid-stream: rejected, and the stream goes on.
			run(t, ctx, pub, "", "-h", host, "-p", port, "-q", "1", "-t", "fleetmeter/acme/dev-bad/usage", "-m", `{"bytes_up": "lots"`)
		}
		run(t, ctx, pub, lines[d].String(), "-h", host, "-p", port, "-q", "1", "-t",
			fmt.Sprintf("fleetmeter/acme/dev-%d/usage", d), "-l")
	}

	chPort := ch.NativeAddr()[strings.LastIndex(ch.NativeAddr(), ":")+1:]
	query := "SELECT count(), toString(sum(amount)), uniqExact(record_id) FROM rated_usage FINAL WHERE charge = 'usage' AND tenant = 'acme'"
	var got string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		got = strings.TrimSpace(run(t, ctx, chClient, "", "--host", "127.0.0.1", "--port", chPort, "--query", query))
		if strings.HasPrefix(got, strconv.Itoa(n)+"\t") {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	fields := strings.Split(got, "\t")
	if len(fields) != 3 {
		t.Fatalf("clickhouse answered %q", got)
	}
	sum, err := record.ParseMicros(fields[1])
	if err != nil {
		t.Fatalf("sum %q: %v", fields[1], err)
	}
	if fields[0] != strconv.Itoa(n) || fields[2] != strconv.Itoa(n) || int64(sum) != wantSum {
		t.Fatalf("clickhouse holds count=%s distinct=%s sum=%s; want %d records summing to %s",
			fields[0], fields[2], fields[1], n, record.Micros(wantSum))
	}

	out := run(t, ctx, kcat, "", "-b", kafkaAddr, "-C", "-t", "rejected", "-o", "beginning", "-e", "-q", "-f", "%s\n")
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rej struct{ Source, Tenant, Device, Reason, Raw string }
		if json.Unmarshal([]byte(line), &rej) != nil {
			continue
		}
		if rej.Device == "dev-bad" && rej.Tenant == "acme" && rej.Source == "mqtt" && rej.Reason != "" && rej.Raw != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no rejection for dev-bad on topic rejected; topic holds:\n%s", out)
	}
}
