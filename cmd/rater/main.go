// Command rater prices usage records: offline over JSON Lines, or as a streaming stage
// between Kafka topic usage and ClickHouse.
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
	{"run", "run [--config FILE] ...         consume topic usage, rate, produce topic rated (transactional)", runStream},
	{"load", "load [--config FILE] ...        load topics rated and rejected into ClickHouse", runLoad},
	{"rules", "rules check FILE...             validate tariff files", runRules},
	{"rate", "rate --rules DIR|FILE [--in FILE] [--close]   rate canonical JSON Lines offline", runRate},
	{"close", "close --period YYYY-MM ...      close a billing period", runClose},
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
	fmt.Fprintln(stderr, "usage: rater COMMAND [ARGS]")
	for _, c := range commands {
		fmt.Fprintln(stderr, "  rater "+c.usage)
	}
	return 2
}
