package chserver_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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

// A server started with a password refuses a client without it (the default user had
// none, so any local process could read and rewrite every tenant's usage) and serves one
// with it; the users file holds the password's hash, not the password.
func TestPasswordRequired(t *testing.T) {
	dir := t.TempDir()
	pw, err := chserver.LoadOrCreatePassword(filepath.Join(dir, "password"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := chserver.Start(ctx, filepath.Join(dir, "ch"), slog.New(slog.DiscardHandler), chserver.WithPassword(pw))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	query := func(password string) error {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.NativeAddr()},
			Auth: clickhouse.Auth{Username: "default", Password: password}})
		if err != nil {
			return err
		}
		defer conn.Close()
		var one uint8
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	if err := query(""); err == nil {
		t.Error("a client without the password was served")
	}
	if err := query(pw + "x"); err == nil {
		t.Error("a client with a wrong password was served")
	}
	if err := query(pw); err != nil {
		t.Errorf("a client with the password: %v", err)
	}
	users, err := os.ReadFile(filepath.Join(srv.Dir(), "users.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(users), pw) || !strings.Contains(string(users), "password_sha256_hex") {
		t.Errorf("users.xml should hold the password's SHA-256 only:\n%s", users)
	}
}

// The password file is created 0600 and read back unchanged, so a restart on the same
// data keeps the password; a file others may read is refused.
func TestLoadOrCreatePassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	first, err := chserver.LoadOrCreatePassword(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || len(first) < 40 {
		t.Fatalf("file %v (err %v), password of %d characters; want mode 0600 and >= 40 characters", st.Mode(), err, len(first))
	}
	again, err := chserver.LoadOrCreatePassword(path)
	if err != nil || again != first {
		t.Fatalf("second call: %q, %v; want the first password back", again, err)
	}
	other, err := chserver.LoadOrCreatePassword(filepath.Join(t.TempDir(), "pw"))
	if err != nil || other == first {
		t.Fatalf("another file: %q, %v; want a new password", other, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := chserver.LoadOrCreatePassword(path); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a world-readable file: %v; want an error asking for 0600", err)
	}
}
