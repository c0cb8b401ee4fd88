package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// soakTally is the soak test's ledger of hostile inputs: what the edge took (and so what
// rejected_usage must hold, per reason) and what it refused, per answer.
type soakTally struct {
	mu      sync.Mutex
	want    map[string]int            // reason -> distinct inputs the pipeline must reject
	refused map[string]int            // "http 429", "coap 4.01", ... -> inputs refused at the edge
	seen    map[string]map[string]int // kind -> reason or answer -> count, for the log
}

func newSoakTally() *soakTally {
	return &soakTally{want: map[string]int{}, refused: map[string]int{}, seen: map[string]map[string]int{}}
}

func (s *soakTally) note(kind, what string, n int) {
	if s.seen[kind] == nil {
		s.seen[kind] = map[string]int{}
	}
	s.seen[kind][what] += n
}

// rejected records n inputs of kind the edge took that the pipeline must reject for reason.
func (s *soakTally) rejected(kind, reason string, n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want[reason] += n
	s.note(kind, reason, n)
}

// refuse records an input of kind refused at the edge with answer.
func (s *soakTally) refuse(kind, answer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused[answer]++
	s.note(kind, answer, 1)
}

func (s *soakTally) wanted() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.want))
	for k, v := range s.want {
		out[k] = v
	}
	return out
}

func (s *soakTally) report() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, kind := range sortedKeys(s.seen) {
		fmt.Fprintf(&b, "  %-22s %s\n", kind, formatCounts(s.seen[kind]))
	}
	fmt.Fprintf(&b, "  refused at the edge: %s\n", formatCounts(s.refused))
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, " ")
}

// latencies collects request latencies per phase.
type latencies struct {
	mu sync.Mutex
	by [3][]time.Duration // index: phase 1 or 2
}

func (l *latencies) add(phase int, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.by[phase] = append(l.by[phase], d)
}

// quantile returns the q-quantile (nearest rank) of a phase's latencies and their count.
func (l *latencies) quantile(phase int, q float64) (time.Duration, int) {
	l.mu.Lock()
	d := append([]time.Duration(nil), l.by[phase]...)
	l.mu.Unlock()
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(q*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))], len(d)
}

// procMem reads VmRSS and VmHWM (bytes) of a process from /proc.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(l, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", name, v, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// jsonString quotes s as a JSON string the way a careless client would: quote, backslash
// and C0 controls escaped, every other byte as is (ESC sequences escaped as \u001b, DEL,
// U+202E and invalid UTF-8 raw).
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// procCPU reads the CPU time (user + system) a process used so far, from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at state, field 3.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
