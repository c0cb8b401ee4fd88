package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// waitPreviousClickHouse waits, after a crash of the standalone pipeline, for the
// ClickHouse server it had started to finish shutting down. The server gets SIGTERM when
// its parent dies and takes a few seconds to exit; meanwhile it holds the lock on
// DATA/clickhouse/data/status, and a restart on the same --data would fail with "Another
// server instance in same directory is already running". The status file names the
// server's pid while it runs.
func waitPreviousClickHouse(chDir string, timeout time.Duration, logger *slog.Logger) error {
	b, err := os.ReadFile(filepath.Join(chDir, "data", "status"))
	if err != nil {
		return nil // none: a clean stop removes the file
	}
	pid := 0
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PID:"); ok {
			pid, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	alive := func() bool {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		return err == nil && strings.Contains(string(comm), "clickhouse")
	}
	if pid <= 0 || !alive() {
		return nil
	}
	logger.Warn("waiting for the previous ClickHouse server to stop", "pid", pid)
	for deadline := time.Now().Add(timeout); alive(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the ClickHouse server of a previous run (pid %d) still holds %s after %s", pid, chDir, timeout)
		}
	}
	return nil
}
