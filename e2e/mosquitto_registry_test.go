package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/sim"
)

// TestMosquittoFromRegistry generates Mosquitto's password file and ACL from a device
// registry with `mediator registry mosquitto`, runs a real Mosquitto on them (as
// deploy/mosquitto/mosquitto.conf does) and the mediator binary behind it, and replays
// the attacks with mosquitto_pub and mosquitto_sub: only what each device
// publishes to its own topic may reach topic usage, and nobody but the mediator reads.
func TestMosquittoFromRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mosquitto, pub, subBin := tool(t, "mosquitto"), tool(t, "mosquitto_pub"), tool(t, "mosquitto_sub")
	dir := t.TempDir()
	victim := sim.Device{Tenant: "autoco", ID: "victim"}
	attacker := sim.Device{Tenant: "agrico", ID: "sensor-1"}
	regFile := filepath.Join(dir, "devices.yaml")
	writeDeviceRegistry(t, regFile, []sim.Device{victim, attacker})

	gen := exec.CommandContext(ctx, filepath.Join(binDir, "mediator"), "registry", "mosquitto", "--registry", regFile,
		"--out", dir, "--mediator-username", "fleetmeter-mediator")
	gen.Env = append(os.Environ(), "FLEETMETER_MQTT_PASSWORD=mediator-secret")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("mediator registry mosquitto: %v\n%s", err, out)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	// user root: Mosquitto started as root reads the password file after dropping to its
	// own user, which cannot enter the test's temporary directory.
	body := fmt.Sprintf("user root\nper_listener_settings false\nlistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n"+
		"acl_file %s\nuse_username_as_clientid true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n",
		port, filepath.Join(dir, "passwd"), filepath.Join(dir, "acl"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	waitTCP(t, addr(port), start(t, mosquitto, "-c", conf))

	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	listen := addr(freePort(t))
	med := start(t, filepath.Join(binDir, "mediator"), "run", "--kafka.brokers", kc.ListenAddrs()[0],
		"--mqtt.brokers", "tcp://"+addr(port), "--mqtt.client-id", "fleetmeter-mediator", "--mqtt.username", "fleetmeter-mediator",
		"--mqtt.password", "mediator-secret", "--listen", listen, "--log-level", "warn")
	waitReady(t, "http://"+listen+"/readyz", med) // subscribed: the ACL lets the mediator read

	host, p := "127.0.0.1", fmt.Sprint(port)
	mosq := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, pub, append([]string{"-h", host, "-p", p, "-q", "1"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	as := func(d sim.Device) []string { return []string{"-u", d.Tenant + "." + d.ID, "-P", "pw-" + d.ID} }
	victimTopic, now := "fleetmeter/autoco/victim/usage", time.Now().UnixMilli()

	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	reader := exec.CommandContext(subCtx, subBin, append([]string{"-h", host, "-p", p, "-t", "#", "-t", "fleetmeter/#", "-v"},
		as(attacker)...)...)
	var readOut strings.Builder
	reader.Stdout, reader.Stderr = &readOut, &readOut
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	readerDone := make(chan struct{})
	go func() { _ = reader.Wait(); close(readerDone) }()
	time.Sleep(300 * time.Millisecond) // subscribed, or refused

	if out, err := mosq(append(as(victim), "-t", victimTopic, "-m", string(burstPayload(1, now)))...); err != nil {
		t.Fatalf("the victim's own publication: %v %s", err, out)
	}
	for _, c := range []struct {
		name     string
		mustFail bool
		args     []string
	}{
		{"anonymous", true, []string{"-t", victimTopic, "-m", string(burstPayload(2, now))}},
		{"a wrong password", true, []string{"-u", "autoco.victim", "-P", "pw-sensor-1", "-t", victimTopic, "-m", string(burstPayload(3, now))}},
		// Mosquitto drops a publication its ACL denies but acknowledges it to a 3.1.1 client.
		{"another device's credentials", false, append(as(attacker), "-t", victimTopic, "-m", string(burstPayload(4, now)))},
		// use_username_as_clientid: this becomes agrico.sensor-1's session, not the mediator's.
		{"the mediator's client id", false, append(as(attacker), "-i", "fleetmeter-mediator", "-t", victimTopic, "-m", string(burstPayload(5, now)))},
	} {
		out, err := mosq(c.args...)
		if c.mustFail && err == nil {
			t.Errorf("mosquitto_pub with %s connected: %s", c.name, out)
		}
		t.Logf("mosquitto_pub with %s: %v %s", c.name, err, out)
	}
	if out, err := mosq(append(as(attacker), "-t", "fleetmeter/agrico/sensor-1/usage", "-m", string(burstPayload(1, now)))...); err != nil {
		t.Fatalf("the attacker's own publication: %v %s", err, out)
	}
	// The mediator kept its session through all of it.
	if out, err := mosq(append(as(victim), "-t", victimTopic, "-m", string(burstPayload(6, now)))...); err != nil {
		t.Fatalf("the victim's second publication: %v %s", err, out)
	}

	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	own := map[string]bool{"mqtt:autoco:victim:1": true, "mqtt:autoco:victim:6": true, "mqtt:agrico:sensor-1:1": true}
	seen, _ := consumeEventIDs(t, cctx, kc.ListenAddrs()[0], len(own), func(seen map[string]int) bool {
		for id := range own {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond)
	for id := range own {
		if seen[id] == 0 {
			t.Errorf("%s, published by its own device, is not in topic usage", id)
		}
	}
	for id := range seen {
		if !own[id] {
			t.Errorf("topic usage holds %s, which no device published to its own topic", id)
		}
	}
	subCancel()
	<-readerDone
	if strings.Contains(readOut.String(), "fleetmeter/") {
		t.Errorf("a device read usage through Mosquitto:\n%s", readOut.String())
	}
	t.Logf("mosquitto_sub as a device: %q", strings.TrimSpace(readOut.String()))
}
