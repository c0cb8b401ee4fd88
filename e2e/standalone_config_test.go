package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/clickhouse"
	"fleetmeter/sim"
)

// standaloneClickHouse is the configuration of a client of the standalone's ClickHouse:
// its address and the password from the file its ready line names.
func standaloneClickHouse(t testing.TB, ready map[string]string) clickhouse.Config {
	t.Helper()
	pw, err := os.ReadFile(ready["clickhouse_password_file"])
	if err != nil {
		t.Fatalf("the standalone's ClickHouse password (ready line's clickhouse_password_file): %v", err)
	}
	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{ready["clickhouse"]}
	cfg.Password = strings.TrimSpace(string(pw))
	return cfg
}

// TestStandaloneConfigFile runs `fleetmeter standalone --config FILE` as a small
// deployment: the tenants' own HTTP keys, a device registry, CoAP over DTLS without dev
// mode, fixed ports (one given by an environment variable). It must listen where told,
// accept a configured key and refuse the demo keys, admit a registered MQTT device and
// refuse a wrong password, take a DTLS device's report, and its ClickHouse must refuse a
// client without the generated password and serve one with it, which finds the posted
// record rated.
func TestStandaloneConfigFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	fleet := sim.NewFleet(1, 5)
	regFile := filepath.Join(dir, "devices.yaml")
	writeDeviceRegistry(t, regFile, fleet.Devices)
	dev := fleet.Devices[0]
	keyFile := filepath.Join(dir, "key")
	const key = "config-test-key-0123456789"
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const pskIdentity, psk = "meter-1@config-test", "s3cret-meter-1"
	coapReg := filepath.Join(dir, "coap-devices.yaml")
	writeFile(t, coapReg, []byte(fmt.Sprintf("strict: true\ndevices:\n  - {tenant: %s, device: meter-1, coap_psk_identity: %q, coap_psk: %q}\n",
		dev.Tenant, pskIdentity, psk)))
	udp := freeUDPPorts(t, 2)
	httpAddr, mqttAddr, coapAddr, dtlsAddr, apiAddr := addr(freePort(t)), addr(freePort(t)), addr(udp[0]), addr(udp[1]), addr(freePort(t))
	conf := filepath.Join(dir, "fleetmeter.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`data: %s
log_level: warn
http:
  listen: %s
  keys:
    - {key_file: %s, tenant: %s}
mqtt:
  listen: %s
  registry_file: %s
coap:
  listen: %s
  dtls_listen: %s
  registry_file: %s
  dev_mode: false
`, filepath.Join(dir, "data"), httpAddr, keyFile, dev.Tenant, mqttAddr, regFile, coapAddr, dtlsAddr, coapReg)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEETMETER_API_LISTEN", apiAddr)
	_, ready := startStandalone(t, "--config", conf)
	for k, want := range map[string]string{"http": httpAddr, "mqtt": mqttAddr, "coap": coapAddr, "api": apiAddr} {
		if ready[k] != want {
			t.Errorf("ready line: %s = %q, want the configured %q", k, ready[k], want)
		}
	}

	post := func(bearer, eventID string) int {
		t.Helper()
		body := fmt.Sprintf(`{"event_id":%q,"tenant":%q,"device":%q,"start_time":%q,"events":1}`+"\n",
			eventID, dev.Tenant, dev.ID, time.Now().UTC().Format(time.RFC3339))
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/usage", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(key, "config-test-1"); code != http.StatusAccepted {
		t.Fatalf("POST with the configured key: %d, want 202", code)
	}
	if code := post("demo-key-"+dev.Tenant+"-0000", "config-test-2"); code != http.StatusUnauthorized {
		t.Errorf("POST with the demo key beside configured keys: %d, want 401", code)
	}

	mqttDevice(t, mqttAddr, dev) // fails the test unless admitted
	opts := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("intruder").
		SetUsername(dev.Tenant + "." + dev.ID).SetPassword("wrong").SetAutoReconnect(false).SetConnectRetry(false)
	if tok := paho.NewClient(opts).Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		t.Error("MQTT: a wrong password was admitted")
	}

	// CoAP over DTLS: the PSK identity names the device; 2.04 once Kafka has the record.
	now := time.Now().UTC()
	wantCoAP(t, ctx, tool(t, "coap-client-openssl"), "2.04", "-u", pskIdentity, "-k", psk, "-m", "post", "-t", "50", "-e",
		fmt.Sprintf(`{"id":"d-1","ts":%q,"end":%q,"bytes_up":77,"duration_ms":30000}`, now.Format(time.RFC3339), now.Format(time.RFC3339)),
		"coaps://"+dtlsAddr+"/usage")

	chcfg := standaloneClickHouse(t, ready)
	anon := chcfg
	anon.Password = ""
	if s, err := clickhouse.Open(ctx, anon); err == nil {
		s.Close()
		t.Error("the standalone's ClickHouse served a client without its password")
	}
	store, err := clickhouse.Open(ctx, chcfg)
	if err != nil {
		t.Fatalf("the standalone's ClickHouse with its password: %v", err)
	}
	defer store.Close()
	// HTTP ingest prefixes the event id with the source and the tenant.
	rated := func(eventID string) uint64 {
		t.Helper()
		var n uint64
		q := "SELECT count() FROM rated_usage WHERE event_id = ?"
		if err := store.Conn().QueryRow(ctx, q, "http:"+dev.Tenant+":"+eventID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for deadline := time.Now().Add(time.Minute); rated("config-test-1") == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the accepted record did not reach rated_usage within a minute")
		}
	}
	if n := rated("config-test-2"); n != 0 {
		t.Fatalf("the refused record: %d rows", n)
	}
}
