package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"fleetmeter/internal/netport"
)

// listenAddrs are where devices and tools reach the standalone pipeline. Once it listens
// it records them in DATA/listen.json, and a restart on the same --data listens on them
// again, so devices (and a test that SIGKILLs the process) find it where they left it. A
// configured address (mqtt.listen, coap.listen, http.listen, api.listen) overrides the
// recorded one; without either, a free loopback port is taken outside the kernel's
// ephemeral range (netport.Stable): a port from that range can be held by an outgoing
// connection when the process restarts (a device redialing meanwhile), and the restart
// would fail with "address already in use".
type listenAddrs struct {
	MQTT  string `json:"mqtt"`
	CoAP  string `json:"coap"`
	HTTP  string `json:"http"`
	API   string `json:"api,omitempty"`
	Kafka string `json:"kafka,omitempty"` // the embedded broker's only
}

const listenFile = "listen.json"

// resolveListenAddrs merges the configured addresses over those recorded in dataDir.
func resolveListenAddrs(dataDir string, configured listenAddrs) (listenAddrs, error) {
	var rec listenAddrs
	b, err := os.ReadFile(filepath.Join(dataDir, listenFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return rec, err
	default:
		if err := json.Unmarshal(b, &rec); err != nil {
			return rec, fmt.Errorf("%s: %w", filepath.Join(dataDir, listenFile), err)
		}
	}
	var perr error
	pick := func(configured, recorded string) string {
		switch {
		case configured != "":
			return configured
		case recorded != "":
			return recorded
		}
		port, err := netport.Stable()
		if err != nil {
			perr = err
			return "127.0.0.1:0"
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	out := listenAddrs{MQTT: pick(configured.MQTT, rec.MQTT), CoAP: pick(configured.CoAP, rec.CoAP),
		HTTP: pick(configured.HTTP, rec.HTTP), API: pick(configured.API, rec.API), Kafka: pick(configured.Kafka, rec.Kafka)}
	if perr != nil {
		return out, fmt.Errorf("listen addresses: %w", perr)
	}
	for _, a := range []struct{ key, v string }{{"mqtt.listen", out.MQTT}, {"coap.listen", out.CoAP},
		{"http.listen", out.HTTP}, {"api.listen", out.API}, {"kafka", out.Kafka}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return out, fmt.Errorf("%s %q: %w", a.key, a.v, err)
		}
	}
	return out, nil
}

// save records a in dataDir, replacing the file atomically.
func (a listenAddrs) save(dataDir string) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dataDir, listenFile)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// kafkaPort is the port of a (the embedded Kafka broker's address); 0 asks for a free one.
func (a listenAddrs) kafkaPort() (int, error) {
	_, p, err := net.SplitHostPort(a.Kafka)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return 0, err
	}
	if port == 0 {
		return netport.Stable()
	}
	return port, nil
}
