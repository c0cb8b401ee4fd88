package main

import (
	"strings"
	"testing"
)

// A restart on the same --data listens where the last run did; a configured address
// overrides that.
func TestListenAddrsRecorded(t *testing.T) {
	dir := t.TempDir()
	first, err := resolveListenAddrs(dir, listenAddrs{})
	if err != nil {
		t.Fatal(err)
	}
	if first != (listenAddrs{MQTT: "127.0.0.1:0", CoAP: "127.0.0.1:0", HTTP: "127.0.0.1:0", API: "127.0.0.1:0", Kafka: "127.0.0.1:0"}) {
		t.Fatalf("first start: %+v", first)
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
