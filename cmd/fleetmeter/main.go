// Command fleetmeter runs the whole pipeline on one machine: `fleetmeter standalone`
// starts an embedded MQTT broker, an embedded Kafka-protocol broker, a local ClickHouse
// server, the mediator and the rater, and optionally feeds them a simulated fleet.
package main

import (
	"fmt"
	"io"
	"os"
)

type command struct {
	name, usage string
	run         func(args []string, stdout, stderr io.Writer) int
	hidden      bool // a helper process of another command
}

var commands = []command{
	{"standalone", "standalone --data DIR [--rules DIR] [--simulate N] [--for D] [--kafka ADDR] [--clickhouse ADDR]", runStandalone, false},
	{"load", "load [--records N] [--devices D] [--data DIR] [--kafka ADDR] [--clickhouse ADDR] [--partitions P] [--overlap]", runLoad, false},
	{"load-rater", "", runLoadRater, true},
}

func main() {
	if len(os.Args) > 1 {
		for _, c := range commands {
			if c.name == os.Args[1] {
				os.Exit(c.run(os.Args[2:], os.Stdout, os.Stderr))
			}
		}
	}
	fmt.Fprintln(os.Stderr, "usage: fleetmeter COMMAND [ARGS]")
	for _, c := range commands {
		if !c.hidden {
			fmt.Fprintln(os.Stderr, "  fleetmeter "+c.usage)
		}
	}
	os.Exit(2)
}
