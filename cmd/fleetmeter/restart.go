package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"fleetmeter/kafka"
	"fleetmeter/pipeline"
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

// raterInstance returns the rater's instance id for this start on the embedded broker
// (a new one each start, counted in DATA/rater-instance) after ending the transaction the
// previous start's id left open. Reusing one transactional id across a SIGKILL lost
// acknowledged records on the embedded broker (kfake reloaded from its data directory):
// some of the restarted rater's first transactions had their offsets committed and their
// output aborted (TestStandaloneCrashNoLoss, about one run in five). With a new id, no
// output shares a producer id with the killed process's open transaction.
func raterInstance(ctx context.Context, dataDir string, kcfg kafka.Config, logger *slog.Logger) (string, error) {
	path := filepath.Join(dataDir, "rater-instance")
	n := 0
	if b, err := os.ReadFile(path); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if n > 0 {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := kafka.AbortOpen(actx, kcfg, pipeline.TxID(instanceName(n)), logger); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(n+1)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("rater instance: %w", err)
	}
	return instanceName(n + 1), nil
}

func instanceName(n int) string { return "standalone-" + strconv.Itoa(n) }
