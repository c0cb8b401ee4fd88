package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"fleetmeter/deploy"
	"fleetmeter/internal/chserver"
)

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
