package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"

	"fleetmeter/deploy"
	"fleetmeter/internal/chserver"
)

// StartKafka runs an embedded Kafka-protocol broker (kfake) on port (0: any), its log under
// dataDir/kafka, creating topics on first use with partitions partitions.
func StartKafka(dataDir string, port int, partitions int32) (*kfake.Cluster, string, error) {
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

// FreePort asks the kernel for an unused loopback port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartClickHouse starts the local clickhouse-server with its data under dir.
func StartClickHouse(ctx context.Context, dir string, logger *slog.Logger) (*chserver.Server, error) {
	srv, err := chserver.Start(ctx, dir, logger)
	if errors.Is(err, chserver.ErrNotInstalled) {
		return nil, fmt.Errorf("%w\n  or point --clickhouse at a running server's native port", err)
	}
	return srv, err
}

// WriteTariffs writes the example tariffs (deploy/tariffs) to dir and returns dir.
func WriteTariffs(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	err := fs.WalkDir(deploy.Tariffs, "tariffs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := deploy.Tariffs.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, d.Name()), b, 0o644)
	})
	return dir, err
}
