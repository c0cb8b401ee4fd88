package loadtest

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the fleetmeter binary when the load test
// starts its rater process (os.Executable with "load-rater"): without it the child would
// run the tests again.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "load-rater" {
		os.Exit(RunRater(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
