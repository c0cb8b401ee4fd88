package chserver_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"fleetmeter/internal/chserver"
	"fleetmeter/internal/chserver/chtest"
)

func TestStartQueryStop(t *testing.T) {
	srv := chtest.StartForTest(t)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.NativeAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	var version string
	if err := conn.QueryRow(context.Background(), "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	// An open connection makes the server wait for it on shutdown.
	conn.Close()
	t.Logf("clickhouse %s at %s (http %s)", version, srv.NativeAddr(), srv.HTTPAddr())
	for _, p := range []string{"config.xml", "users.xml", "data", "logs/clickhouse-server.log"} {
		if _, err := os.Stat(filepath.Join(srv.Dir(), p)); err != nil {
			t.Errorf("expected %s in the data dir: %v", p, err)
		}
	}
	// The data and the server's settings are the owner's only.
	for p, want := range map[string]os.FileMode{"config.xml": 0o600, "users.xml": 0o600, "data": 0o700, "logs": 0o700} {
		if st, err := os.Stat(filepath.Join(srv.Dir(), p)); err == nil && st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-srv.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after Stop")
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

func TestStartFailsOnBadDir(t *testing.T) {
	dir := t.TempDir()
	// A file where the data directory should be makes the server fail at once.
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := chserver.Start(ctx, dir, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("expected an error")
	}
	t.Logf("error: %v", err)
}
