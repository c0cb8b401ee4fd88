// Package chtest starts a real clickhouse-server for tests of other packages. It never
// skips: a missing binary fails the test, because `make test` installs it.
package chtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"fleetmeter/internal/chserver"
)

// StartForTest starts a server in a temporary directory and stops it when the test ends.
func StartForTest(t testing.TB) *chserver.Server {
	t.Helper()
	srv, err := chserver.Start(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(explain(err))
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stop clickhouse: %v", err)
		}
	})
	return srv
}

// RunMain starts one server for a whole test binary, runs the tests and stops the server.
// Starting ClickHouse takes about a second, so packages with many tests share one:
//
//	var srv *chserver.Server
//	func TestMain(m *testing.M) { os.Exit(chtest.RunMain(m, &srv)) }
func RunMain(m *testing.M, srv **chserver.Server) int {
	dir, err := os.MkdirTemp("", "fleetmeter-clickhouse-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, err := chserver.Start(context.Background(), dir, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chtest:", explain(err))
		return 1
	}
	*srv = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "chtest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func explain(err error) string {
	if errors.Is(err, chserver.ErrNotInstalled) {
		return "this test needs a real ClickHouse and none is installed: " + err.Error() + " (`make test` installs it)"
	}
	return err.Error()
}
