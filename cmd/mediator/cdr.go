package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/goccy/go-yaml"

	"fleetmeter/cdr"
	"fleetmeter/record"
)

const cdrUsage = `usage: mediator cdr decode [--tenant-default T] [--tenants FILE] [--received-time RFC3339] FILE...

Prints the canonical usage.v1 records of CHF CDR files (TS 32.297 files or raw BER
CHFRecords; FILE "-" is stdin) as JSON Lines on stdout. A damaged file yields its records
before the damage, then an error naming the file and byte offset on stderr; the exit code
is then 1.
`

// runCDR implements "mediator cdr ...".
func runCDR(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "decode" {
		fmt.Fprint(stderr, cdrUsage)
		return 2
	}
	fs := flag.NewFlagSet("mediator cdr decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cdrUsage) }
	tenantDefault := fs.String("tenant-default", "", "tenant for CDRs no tenant rule maps")
	tenantsFile := fs.String("tenants", "", "YAML tenant map (default, rules); --tenant-default overrides its default")
	received := fs.String("received-time", "", "received_time to stamp on every record (RFC 3339); default the epoch (0)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, cdrUsage)
		return 2
	}
	cfg := cdr.DefaultConfig()
	if *tenantsFile != "" {
		b, err := os.ReadFile(*tenantsFile)
		if err == nil {
			err = yaml.UnmarshalWithOptions(b, &cfg.Tenants, yaml.Strict())
		}
		if err != nil {
			fmt.Fprintf(stderr, "mediator cdr decode: --tenants %s: %v\n", *tenantsFile, err)
			return 2
		}
	}
	if *tenantDefault != "" {
		cfg.Tenants.Default = *tenantDefault
	}
	dec, err := cdr.NewDecoder(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mediator cdr decode: %v\n", err)
		return 2
	}
	if *received != "" {
		t, err := time.Parse(time.RFC3339Nano, *received)
		if err != nil {
			fmt.Fprintf(stderr, "mediator cdr decode: --received-time: %v\n", err)
			return 2
		}
		dec.ReceivedTime = t.UnixMilli()
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	var (
		recs []record.Usage
		line []byte
		code int
	)
	for _, name := range fs.Args() {
		var b []byte
		if name == "-" {
			b, err = io.ReadAll(stdin)
		} else {
			b, err = os.ReadFile(name)
		}
		if err != nil {
			out.Flush()
			fmt.Fprintf(stderr, "mediator cdr decode: %v\n", err)
			code = 1
			continue
		}
		recs, err = dec.Decode(b, recs[:0])
		for i := range recs {
			line = append(record.AppendJSON(line[:0], &recs[i]), '\n')
			out.Write(line)
		}
		if werr := out.Flush(); werr != nil {
			fmt.Fprintf(stderr, "mediator cdr decode: write: %v\n", werr)
			return 1
		}
		if err != nil {
			// The error names the byte offset (a *cdr.DecodeError); the records before it
			// are already on stdout.
			fmt.Fprintf(stderr, "mediator cdr decode: %s: %v (%d records before it)\n", name, err, len(recs))
			code = 1
		}
	}
	return code
}
