package loadtest

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the fleetmeter binary when the load test
// starts its rater process (os.Executable with "load-rater") and the benchmark report its
// Kafka broker ("kafka-broker"): without it the child would run the tests again.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "load-rater":
			os.Exit(RunRater(os.Args[2:], os.Stdout, os.Stderr))
		case "kafka-broker":
			os.Exit(RunKafkaBroker(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	os.Exit(m.Run())
}
