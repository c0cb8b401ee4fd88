package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"fleetmeter/rating"
	"fleetmeter/record"
	"fleetmeter/rules"
)

// runRules validates tariff files: `rules check FILE|DIR...`. Each problem prints as
// "file:line: key: message" on stdout; files without problems print "ok FILE". All the
// files given are also checked together (tenants shared through distinct valid_from).
// Exit 1 if any problem, 2 on usage errors.
func runRules(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const usage = "usage: rater rules check FILE|DIR...\n\nValidate tariff files (a directory: its *.yaml and *.yml): each problem prints as\nfile:line: key: message, a good file as ok FILE; exit 1 on any problem.\n"
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// A flag set of its own, so --help is help and not a file name (-- ends the flags).
	fs := flag.NewFlagSet("rater rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var files []string
	for _, a := range fs.Args() {
		fi, err := os.Stat(a)
		if err != nil {
			fmt.Fprintf(stdout, "%s:0: (file): %v\n", a, err)
			return 1
		}
		if !fi.IsDir() {
			files = append(files, a)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			fmt.Fprintf(stdout, "%s:0: (file): %v\n", a, err)
			return 1
		}
		for _, e := range ents {
			if n := e.Name(); !e.IsDir() && (bytes.HasSuffix([]byte(n), []byte(".yaml")) || bytes.HasSuffix([]byte(n), []byte(".yml"))) {
				files = append(files, a+string(os.PathSeparator)+n)
			}
		}
	}
	_, err := rules.LoadFiles(files...)
	probs := rules.Problems(err)
	bad := map[string]bool{}
	for _, p := range probs {
		if p.File == "" {
			fmt.Fprintf(stdout, "%s\n", p.Msg)
			bad[""] = true
			continue
		}
		fmt.Fprintln(stdout, p.Error())
		bad[p.File] = true
	}
	for _, f := range files {
		if !bad[f] {
			fmt.Fprintf(stdout, "ok %s\n", f)
		}
	}
	if len(probs) > 0 {
		return 1
	}
	return 0
}

// runRate rates canonical JSON Lines offline with the streaming engine: one State and an
// in-memory device counter. Rated records go to stdout; each rejected line goes to stderr
// as a rejection JSON object and makes the exit status 1 once the input is done.
func runRate(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rater rate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rulesPath := fs.String("rules", "", "tariff file or directory (required)")
	in := fs.String("in", "", "input JSON Lines file (default stdin)")
	closeAll := fs.Bool("close", false, "treat every period in the input as closed and print adjustments")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *rulesPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: rater rate --rules DIR|FILE [--in FILE] [--close]")
		return 2
	}
	set, err := rules.Load(*rulesPath)
	if err != nil {
		for _, p := range rules.Problems(err) {
			if p.File == "" {
				fmt.Fprintln(stderr, p.Msg)
			} else {
				fmt.Fprintln(stderr, p.Error())
			}
		}
		return 2
	}
	r := stdin
	if *in != "" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintf(stderr, "rate: %v\n", err)
			return 2
		}
		defer f.Close()
		r = f
	}
	code, err := rateStream(set, r, stdout, stderr, *closeAll)
	if err != nil {
		fmt.Fprintf(stderr, "rate: %v\n", err)
		return 2
	}
	return code
}

func rateStream(set *rules.Set, r io.Reader, stdout, stderr io.Writer, closeAll bool) (int, error) {
	eng := rating.NewEngine(set, rating.Options{})
	st := rating.NewState()
	out := bufio.NewWriterSize(stdout, 1<<16)
	br := bufio.NewReaderSize(r, 1<<16)
	var recs []record.Rated
	var buf []byte
	periods := map[string]bool{}
	rejected, copies := 0, 0
	// A record is priced once: a later copy of a (tenant, event_id) already rated is
	// skipped, so the first rating stands, as in the stream's store.
	seen := map[string]struct{}{}
	reject := func(line []byte, u *record.Usage, reason, detail string) {
		rej := record.Rejection{Source: u.Source, Tenant: u.Tenant, Device: u.Device, Reason: reason,
			Detail: detail, Received: time.Now().UnixMilli()}
		rej.SetRaw(line)
		fmt.Fprintf(stderr, "%s\n", rej.AppendJSON(nil))
		rejected++
	}
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				u, perr := record.ParseJSON(line)
				if perr != nil {
					reject(line, &u, record.ReasonBadJSON, fmt.Sprintf("line %d: %v", lineNo, perr))
				} else if verr := u.Validate(); verr != nil {
					reject(line, &u, record.ReasonOf(verr), fmt.Sprintf("line %d: %v", lineNo, verr))
				} else if _, dup := seen[u.Tenant+"\x00"+u.EventID]; dup {
					copies++
				} else {
					var rerr error
					recs, rerr = eng.Rate(st, &u, recs[:0])
					if err := rerr; err != nil {
						reject(line, &u, record.ReasonOf(err), fmt.Sprintf("line %d: %v", lineNo, err))
					}
					for i := range recs {
						buf = record.AppendRatedJSON(buf[:0], &recs[i])
						buf = append(buf, '\n')
						if _, err := out.Write(buf); err != nil {
							return 2, err
						}
					}
					if rerr == nil {
						periods[u.Start().Format("2006-01")] = true
						seen[u.Tenant+"\x00"+u.EventID] = struct{}{}
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 2, err
		}
	}
	if closeAll {
		ps := make([]string, 0, len(periods))
		for p := range periods {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		for _, p := range ps {
			var err error
			if recs, err = eng.Close([]*rating.State{st}, p, recs[:0]); err != nil {
				return 2, err
			}
			for i := range recs {
				buf = record.AppendRatedJSON(buf[:0], &recs[i])
				buf = append(buf, '\n')
				if _, err := out.Write(buf); err != nil {
					return 2, err
				}
			}
		}
	}
	if err := out.Flush(); err != nil {
		return 2, err
	}
	if copies > 0 {
		fmt.Fprintf(stderr, "rate: %d copie(s) of records already rated skipped (the first rating stands)\n", copies)
	}
	if rejected > 0 {
		fmt.Fprintf(stderr, "rate: %d record(s) rejected\n", rejected)
		return 1, nil
	}
	return 0, nil
}
