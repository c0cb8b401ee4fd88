// Command mediator collects usage from devices and networks, normalizes it to usage.v1
// and produces it to Kafka.
package main

import (
	"io"
	"os"

	"fleetmeter/internal/config"
)

var commands = []config.Command{
	{Name: "run", Usage: "run [--config FILE] ...       run the collectors", Run: runCollectors},
	{Name: "cdr", Usage: "cdr decode FILE... | cdr import DIR|FILE...   print CDR files as canonical JSON Lines, or back-fill them into Kafka", Run: runCDR},
	{Name: "registry", Usage: "registry mosquitto --registry FILE --out DIR   Mosquitto password file and ACL from the device registry", Run: runRegistry},
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return config.Dispatch("mediator", commands, args, stdin, stdout, stderr)
}
