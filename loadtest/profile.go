package loadtest

import (
	"os"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// cpuSplit is a CPU profile's samples split into parts by their stacks.
type cpuSplit struct {
	Total time.Duration
	Parts map[string]time.Duration // by part name; a sample is in the first part it matches
}

// profilePart is one part of a split: a sample belongs to it when any function of its
// stack (inlined ones included) contains one of Funcs.
type profilePart struct {
	Name  string
	Funcs []string
}

// httpParts split a profile of an HTTP ingest benchmark (clients and server in one
// process) in the order a sample is tested against them: the collector's and the bare
// handler's benchmarks are profiled alike, so each part compares across the two.
var httpParts = []profilePart{
	{partGC, []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcAssistAlloc"}},
	{"the benchmark's HTTP clients (same on both sides)", []string{".(*poster)", "net/http.(*persistConn)", "net/http.(*Transport)", "net/http.(*Client)"}},
	{"reading the request body", []string{"net/http.(*body).Read", "net/http.(*body).readLocked"}},
	{partParse, []string{"httpin.(*lineReader)", "record.(*JSONLineReader)", "encoding/json.Valid"}},
	{partAdmission, []string{"httpin.(*batch).check"}},
	{"the rest of the handler (hand-off to the sink, answer)", []string{"net/http.serverHandler.ServeHTTP"}},
	{"net/http's server (requests, responses, connections)", []string{"net/http.(*conn).serve"}},
}

// The parts the report's explanation adds up.
const (
	partGC        = "garbage collector (marking, sweeping, assists)"
	partParse     = "parsing the JSON lines"
	partAdmission = "admission (each record's checks)"
)

// otherPart holds the samples no part matched: the scheduler, timers, syscalls outside
// a handler, the rest of the runtime.
const otherPart = "scheduler, timers and the rest of the runtime"

// splitProfile reads the CPU profile at path and splits its samples into parts.
func splitProfile(path string, parts []profilePart) (cpuSplit, error) {
	f, err := os.Open(path)
	if err != nil {
		return cpuSplit{}, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return cpuSplit{}, err
	}
	return splitSamples(p, parts), nil
}

// splitSamples splits p's CPU samples (the sample type measured in nanoseconds).
func splitSamples(p *profile.Profile, parts []profilePart) cpuSplit {
	s := cpuSplit{Parts: map[string]time.Duration{}}
	idx := -1
	for i, st := range p.SampleType {
		if st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return s
	}
	for _, smp := range p.Sample {
		d := time.Duration(smp.Value[idx])
		s.Total += d
		s.Parts[partOf(smp, parts)] += d
	}
	return s
}

func partOf(smp *profile.Sample, parts []profilePart) string {
	for _, part := range parts {
		for _, loc := range smp.Location {
			for _, line := range loc.Line {
				if line.Function == nil {
					continue
				}
				for _, fn := range part.Funcs {
					if strings.Contains(line.Function.Name, fn) {
						return part.Name
					}
				}
			}
		}
	}
	return otherPart
}
