package main

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/twmb/franz-go/pkg/kfake"
)

// startKafka runs the embedded Kafka-protocol broker with its log under dataDir/kafka, so
// a restart of the standalone pipeline resumes where it stopped.
func startKafka(dataDir string, port int, partitions int32) (*kfake.Cluster, string, error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(filepath.Join(dataDir, "kafka")),
		kfake.DefaultNumPartitions(int(partitions)),
		kfake.AllowAutoTopicCreation(),
	)
	if err != nil {
		return nil, "", fmt.Errorf("embedded kafka: %w", err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, "", fmt.Errorf("embedded kafka: no listener")
	}
	return c, addrs[0], nil
}

// startMQTT runs the embedded MQTT broker on addr (host:port).
func startMQTT(addr string, logger *slog.Logger) (*mochi.Server, error) {
	s := mochi.New(&mochi.Options{InlineClient: false, Logger: logger.With("component", "mqtt-broker")})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("embedded mqtt: %w", err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		return nil, fmt.Errorf("embedded mqtt: %w", err)
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded mqtt: %w", err)
	}
	return s, nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
