package check

import (
	"io"
	"log"
	"os"
	"testing"
)

// TestMain removes the binaries the tests built, and quiets the Helm loader's
// standard-log note, printed at every render, that the chart's files/tariffs is a
// symbolic link to deploy/tariffs (on purpose: the chart ships the repository's example
// tariffs, alert rules and dashboards without a copy).
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir) // the binaries built for binaries_test.go
	}
	os.Exit(code)
}
