package main

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"fleetmeter/internal/netport"
)

// A restart on the same --data listens where the last run did; a configured address
// overrides that; the first start's ports lie outside the ephemeral range.
func TestListenAddrsRecorded(t *testing.T) {
	dir := t.TempDir()
	first, err := resolveListenAddrs(dir, listenAddrs{})
	if err != nil {
		t.Fatal(err)
	}
	// The first start takes distinct loopback ports outside the kernel's ephemeral range,
	// where no outgoing connection can hold one when the pipeline restarts on it.
	ports := map[string]bool{}
	for _, a := range []string{first.MQTT, first.CoAP, first.HTTP, first.API, first.Kafka} {
		host, p, err := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		if err != nil || host != "127.0.0.1" || port == 0 || netport.Ephemeral(port) || ports[p] {
			t.Fatalf("first start: %+v: %q is not a distinct loopback port outside the ephemeral range", first, a)
		}
		ports[p] = true
	}
	ran := listenAddrs{MQTT: "127.0.0.1:18830", CoAP: "127.0.0.1:15683", HTTP: "127.0.0.1:18080", API: "127.0.0.1:18480",
		Kafka: "127.0.0.1:19092"}
	if err := ran.save(dir); err != nil {
		t.Fatal(err)
	}
	again, err := resolveListenAddrs(dir, listenAddrs{})
	if err != nil || again != ran {
		t.Fatalf("restart: %+v %v, want %+v", again, err, ran)
	}
	if p, err := again.kafkaPort(); err != nil || p != 19092 {
		t.Fatalf("kafka port %d %v", p, err)
	}
	moved, err := resolveListenAddrs(dir, listenAddrs{MQTT: "0.0.0.0:1883"})
	if err != nil || moved.MQTT != "0.0.0.0:1883" || moved.CoAP != ran.CoAP {
		t.Fatalf("--mqtt-addr: %+v %v", moved, err)
	}
	if _, err := resolveListenAddrs(dir, listenAddrs{HTTP: "8080"}); err == nil || !strings.HasPrefix(err.Error(), "http.listen") {
		t.Fatalf("bad http.listen: %v", err)
	}
}
