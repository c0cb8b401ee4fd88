// Command fleetmeter runs the whole pipeline on one machine: `fleetmeter standalone`
// starts an embedded MQTT broker, an embedded Kafka-protocol broker, a local ClickHouse
// server, the mediator and the rater, and optionally feeds them a simulated fleet.
package main

import (
	"io"
	"os"

	"fleetmeter/internal/config"
	"fleetmeter/loadtest"
)

// noStdin adapts a command that reads no input to config.Command.
func noStdin(run func(args []string, stdout, stderr io.Writer) int) func([]string, io.Reader, io.Writer, io.Writer) int {
	return func(args []string, _ io.Reader, stdout, stderr io.Writer) int { return run(args, stdout, stderr) }
}

var commands = []config.Command{
	{Name: "standalone", Usage: "standalone --data DIR [--rules DIR] [--simulate N] [--for D] [--kafka ADDR] [--clickhouse ADDR]", Run: noStdin(runStandalone)},
	{Name: "load", Usage: "load [--records N] [--devices D] [--data DIR] [--kafka ADDR] [--clickhouse ADDR] [--partitions P] [--overlap]", Run: noStdin(loadtest.RunLoad)},
	{Name: "load-rater", Run: noStdin(loadtest.RunRater), Hidden: true},
}

func main() {
	os.Exit(config.Dispatch("fleetmeter", commands, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
