package config

import (
	"bytes"
	"fmt"
	"io"
)

// Command is one subcommand of a binary: args exclude the binary and subcommand names.
type Command struct {
	Name, Usage string
	Run         func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
	Hidden      bool // a helper process of another command, not listed
}

// Dispatch runs the subcommand args[0] names, with the conventions every binary keeps:
// --help (help, -h) lists the subcommands on stdout with status 0, --version prints
// Version, and no or an unknown subcommand is a usage error (stderr, status 2). A
// subcommand's --help goes to stdout with status 0 too, also for those whose flag sets
// print their usage on stderr and return 2 (the flag package's default).
func Dispatch(binary string, cmds []Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch {
		case IsHelp(args[0]):
			listCommands(binary, cmds, stdout)
			return 0
		case IsVersion(args[0]):
			fmt.Fprint(stdout, Version(binary))
			return 0
		}
		for _, c := range cmds {
			if c.Name != args[0] {
				continue
			}
			if !asksHelp(args[1:]) {
				return c.Run(args[1:], stdin, stdout, stderr)
			}
			var errBuf bytes.Buffer
			code := c.Run(args[1:], stdin, stdout, &errBuf)
			if code == 2 || code == 0 {
				_, _ = stdout.Write(errBuf.Bytes())
				return 0
			}
			_, _ = stderr.Write(errBuf.Bytes())
			return code
		}
		fmt.Fprintf(stderr, "%s: unknown command %q\n", binary, args[0])
	}
	listCommands(binary, cmds, stderr)
	return 2
}

func listCommands(binary string, cmds []Command, w io.Writer) {
	fmt.Fprintf(w, "usage: %s COMMAND [ARGS]   (%s COMMAND --help for its flags; %s --version)\n", binary, binary, binary)
	for _, c := range cmds {
		if !c.Hidden {
			fmt.Fprintf(w, "  %s %s\n", binary, c.Usage)
		}
	}
}

// asksHelp reports whether a flag in args asks for help.
func asksHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}
