// Command mediator collects usage from devices and networks, normalizes it to usage.v1
// and produces it to Kafka.
package main

import (
	"fmt"
	"io"
	"os"
)

// command is one subcommand: args exclude the program and subcommand names.
type command struct {
	name, usage string
	run         func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = []command{
	{"run", "run [--config FILE] ...       run the collectors", runCollectors},
	{"cdr", "cdr decode FILE... | cdr import DIR|FILE...   print CDR files as canonical JSON Lines, or back-fill them into Kafka", runCDR},
	{"registry", "registry mosquitto --registry FILE --out DIR   Mosquitto password file and ACL from the device registry", runRegistry},
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		for _, c := range commands {
			if c.name == args[0] {
				return c.run(args[1:], stdin, stdout, stderr)
			}
		}
	}
	fmt.Fprintln(stderr, "usage: mediator COMMAND [ARGS]")
	for _, c := range commands {
		fmt.Fprintln(stderr, "  mediator "+c.usage)
	}
	return 2
}
