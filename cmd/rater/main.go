// Command rater prices usage records: offline over JSON Lines, or as a streaming stage
// between Kafka topic usage and ClickHouse.
package main

import (
	"io"
	"os"

	"fleetmeter/internal/config"
)

var commands = []config.Command{
	{Name: "run", Usage: "run [--config FILE] ...         consume topic usage, rate, produce topic rated (transactional)", Run: runStream},
	{Name: "load", Usage: "load [--config FILE] ...        load topics rated and rejected into ClickHouse", Run: runLoad},
	{Name: "rules", Usage: "rules check FILE...             validate tariff files", Run: runRules},
	{Name: "rate", Usage: "rate --rules DIR|FILE [--in FILE] [--close]   rate canonical JSON Lines offline", Run: runRate},
	{Name: "close", Usage: "close --period YYYY-MM ...      close a billing period", Run: runClose},
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return config.Dispatch("rater", commands, args, stdin, stdout, stderr)
}
