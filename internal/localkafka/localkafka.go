// Package localkafka runs an embedded Kafka-protocol broker (franz-go's kfake) in this
// process, its log on disk: the standalone pipeline's default Kafka, and the load test's.
package localkafka

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Start runs a one-broker cluster on port (0: a free one) with its log under
// dataDir/kafka, so a restart on the same directory resumes where it stopped. Topics are
// created on first use with partitions partitions. It returns the cluster, for Close, and
// the address clients dial.
func Start(dataDir string, port int, partitions int32) (*kfake.Cluster, string, error) {
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
		return nil, "", errors.New("embedded kafka: no listener")
	}
	return c, addrs[0], nil
}
