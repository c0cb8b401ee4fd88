package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fleetmeter/ingest/registry"
	"fleetmeter/sim"
)

// writeDeviceRegistry writes a strict registry naming the devices, each logging in over
// MQTT as <tenant>.<device> with password pw-<device>.
func writeDeviceRegistry(t *testing.T, path string, devices []sim.Device) {
	t.Helper()
	var ds []registry.Device
	for _, d := range devices {
		h, err := registry.HashPassword("pw-" + d.ID)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, registry.Device{Tenant: d.Tenant, Device: d.ID, MQTTUsername: d.Tenant + "." + d.ID, MQTTPasswordHash: h})
	}
	if err := os.WriteFile(path, registry.Format(true, ds), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startStandalone runs `fleetmeter standalone` and returns it with the addresses its ready
// line names.
func startStandalone(t *testing.T, args ...string) (*proc, map[string]string) {
	t.Helper()
	p := start(t, filepath.Join(binDir, "fleetmeter"), append([]string{"standalone"}, args...)...)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		out := p.out.String()
		p.mu.Unlock()
		for _, line := range strings.Split(out, "\n") {
			if js, ok := strings.CutPrefix(line, "ready "); ok {
				var ready map[string]string
				if err := json.Unmarshal([]byte(js), &ready); err != nil {
					t.Fatalf("ready line %q: %v", line, err)
				}
				return p, ready
			}
		}
		select {
		case <-p.done:
			t.Fatalf("fleetmeter standalone exited (%v): %s", p.cmd.ProcessState, p.output())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("fleetmeter standalone printed no ready line: %s", p.output())
	return nil, nil
}

// mqttDevice connects as device d of writeDeviceRegistry.
func mqttDevice(t *testing.T, brokerAddr string, d sim.Device) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID(d.Tenant + "." + d.ID).
		SetUsername(d.Tenant + "." + d.ID).SetPassword("pw-" + d.ID).SetAutoReconnect(false).SetWriteTimeout(30 * time.Second)
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %s.%s: %v", d.Tenant, d.ID, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}

// TestStandaloneMQTTBurstNoLoss publishes 30,000 QoS 1 messages in a burst (10 devices
// publishing without waiting for acknowledgements) to `fleetmeter standalone`. Every
// PUBACKed message must reach topic usage: the embedded broker acknowledges only what
// Kafka acknowledged, and under load applies back-pressure instead of dropping.
func TestStandaloneMQTTBurstNoLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const devices, perDevice = 10, 3000
	const total = devices * perDevice
	dir := t.TempDir()
	fleet := sim.NewFleet(devices, 3)
	regFile := filepath.Join(dir, "devices.yaml")
	writeDeviceRegistry(t, regFile, fleet.Devices)
	_, ready := startStandalone(t, "--data", filepath.Join(dir, "data"), "--registry", regFile, "--log-level", "warn")

	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for i, d := range fleet.Devices {
		cl := mqttDevice(t, ready["mqtt"], d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]paho.Token, perDevice)
			now := time.Now().UnixMilli()
			for s := range perDevice {
				toks[s] = cl.Publish(fleet.Topic("fleetmeter", i), 1, false, burstPayload(s+1, now))
			}
			for s, tok := range toks {
				if !tok.WaitTimeout(90*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("%s seq %d: not acknowledged: %v", d.ID, s+1, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d messages PUBACKed in %s", total, time.Since(began).Round(time.Millisecond))

	want := func(i, s int) string {
		return fmt.Sprintf("mqtt:%s:%s:%d", fleet.Devices[i].Tenant, fleet.Devices[i].ID, s)
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	// Everything PUBACKed is in Kafka already: no waiting for stragglers.
	seen, records := consumeEventIDs(t, cctx, ready["kafka"], total, func(seen map[string]int) bool {
		for i := range devices {
			for s := 1; s <= perDevice; s++ {
				if seen[want(i, s)] == 0 {
					return false
				}
			}
		}
		return true
	})
	missing := 0
	for i := range devices {
		for s := 1; s <= perDevice; s++ {
			if seen[want(i, s)] == 0 {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d PUBACKed messages are not in topic usage", missing, total)
	}
	t.Logf("all %d PUBACKed messages in topic usage (%d records)", total, records)
}

func burstPayload(seq int, ts int64) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"ts":%d,"events":1,"bytes_up":100}`, seq, ts)
}

// TestStandaloneMQTTAuth replays the attacks on `fleetmeter standalone` with
// mosquitto_pub and mosquitto_sub: publishing to another tenant's topic anonymously or
// with another device's credentials, reading usage, taking the mediator's client id or a
// device's session. None may succeed, and topic usage must hold only what each device
// published to its own topic.
func TestStandaloneMQTTAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pub, subBin := tool(t, "mosquitto_pub"), tool(t, "mosquitto_sub")
	dir := t.TempDir()
	victim := sim.Device{Tenant: "autoco", ID: "victim"}
	attacker := sim.Device{Tenant: "agrico", ID: "sensor-1"}
	regFile := filepath.Join(dir, "devices.yaml")
	writeDeviceRegistry(t, regFile, []sim.Device{victim, attacker})
	_, ready := startStandalone(t, "--data", filepath.Join(dir, "data"), "--registry", regFile, "--log-level", "warn")
	host, port, _ := strings.Cut(ready["mqtt"], ":")
	victimTopic := "fleetmeter/autoco/victim/usage"
	now := time.Now().UnixMilli()

	// A reader with valid device credentials, listening to everything while the rest runs.
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	reader := exec.CommandContext(subCtx, subBin, "-h", host, "-p", port, "-u", "agrico.sensor-1", "-P", "pw-sensor-1",
		"-i", "reader", "-t", "#", "-t", "fleetmeter/#", "-q", "1", "-v")
	var readOut strings.Builder
	reader.Stdout, reader.Stderr = &readOut, &readOut
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan struct{})
	go func() { _ = reader.Wait(); close(readerDone) }()

	victimCl := mqttDevice(t, ready["mqtt"], victim)
	if tok := victimCl.Publish(victimTopic, 1, false, burstPayload(1, now)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the victim's own publication: %v", tok.Error())
	}

	mosq := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, pub, append([]string{"-h", host, "-p", port, "-q", "1"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"anonymous", []string{"-t", victimTopic, "-m", string(burstPayload(2, now))}},
		{"another device's credentials", []string{"-u", "agrico.sensor-1", "-P", "pw-sensor-1", "-t", victimTopic, "-m", string(burstPayload(3, now))}},
		{"a wrong password", []string{"-u", "autoco.victim", "-P", "pw-sensor-1", "-t", victimTopic, "-m", string(burstPayload(4, now))}},
		{"the mediator's client id", []string{"-i", "fleetmeter-standalone-mediator", "-u", "autoco.victim", "-P", "pw-victim",
			"-t", victimTopic, "-m", string(burstPayload(5, now))}},
	} {
		out, err := mosq(c.args...)
		if err == nil {
			t.Errorf("mosquitto_pub with %s to the victim's topic succeeded: %s", c.name, out)
		}
		t.Logf("mosquitto_pub with %s: %v %s", c.name, err, strings.TrimSpace(out))
	}
	// Taking the victim's session by naming its client id.
	if out, err := mosq("-i", "autoco.victim", "-u", "agrico.sensor-1", "-P", "pw-sensor-1",
		"-t", "fleetmeter/agrico/sensor-1/usage", "-m", string(burstPayload(1, now))); err != nil {
		t.Fatalf("the attacker's own publication: %v %s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	if !victimCl.IsConnectionOpen() {
		t.Error("another device took over the victim's session by its client id")
	}
	if tok := victimCl.Publish(victimTopic, 1, false, burstPayload(6, now)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("the victim's second publication: %v", tok.Error())
	}

	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	own := []string{"mqtt:autoco:victim:1", "mqtt:autoco:victim:6", "mqtt:agrico:sensor-1:1"}
	seen, _ := consumeEventIDs(t, cctx, ready["kafka"], len(own), func(seen map[string]int) bool {
		for _, id := range own {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range own {
		if seen[id] == 0 {
			t.Errorf("%s, published by its own device, is not in topic usage", id)
		}
	}
	for id := range seen {
		if id != own[0] && id != own[1] && id != own[2] {
			t.Errorf("topic usage holds %s, which no device published to its own topic", id)
		}
	}
	subCancel()
	<-readerDone
	if strings.Contains(readOut.String(), "fleetmeter/") {
		t.Errorf("a device read usage:\n%s", readOut.String())
	}
	t.Logf("mosquitto_sub as a device: %s", strings.TrimSpace(readOut.String()))
}
