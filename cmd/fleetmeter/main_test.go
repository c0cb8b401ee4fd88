package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the fleetmeter binary when a command starts
// a helper process of itself (`fleetmeter load` starts `load-rater` with os.Executable):
// without it the child would run the tests again.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "load-rater" {
		os.Exit(runLoadRater(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
