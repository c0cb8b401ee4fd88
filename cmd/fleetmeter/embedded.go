package main

import (
	"fmt"
	"net"
	"path/filepath"

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

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
