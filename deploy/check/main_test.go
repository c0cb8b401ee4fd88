package check

import (
	"io"
	"log"
	"os"
	"testing"
)

// TestMain quiets the Helm loader's standard-log note, printed at every render, that the
// chart's files/tariffs is a symbolic link to deploy/tariffs (which it is on purpose: the
// chart ships the repository's example tariffs without a copy).
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
