package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The hostile stream of TestSoakHostileInputs runs in a process of its own (this test
// binary again, running TestSoakAttacker): its floods (64 HTTP clients, 3,000 UDP sockets
// at a time) would otherwise share a Go scheduler with kfake, which acknowledges the valid
// tenants' records, and with the client measuring their latency, so the test would measure
// its own load generator. It runs at nice 19: attackers are on other machines, so their
// own client-side work (connects, 3,000 sockets) should not take the pipeline's two CPUs
// here; the mediator's work for every hostile input is not discounted.

const soakAttackEnv = "FLEETMETER_SOAK_ATTACK"

// soakAttack is what the attacker is told (in soakAttackEnv) and what it reports back.
type soakAttack struct {
	HTTPURL  string `json:"http_url"`
	MQTTAddr string `json:"mqtt_addr"`
	CoAPAddr string `json:"coap_addr"`
}

type soakAttackReport struct {
	Want    map[string]int            `json:"want"`
	Refused map[string]int            `json:"refused"`
	Seen    map[string]map[string]int `json:"seen"`
	Marks   []string                  `json:"marks"`
}

// TestSoakAttacker is the hostile stream of TestSoakHostileInputs, run by it as a child
// process; on its own it skips. Protocol: it prints "SOAK-READY", reads its targets (a
// soakAttack as JSON) from a line of stdin, starts on a line "go", stops on "stop" (or
// EOF), then prints "SOAK-REPORT {json}".
func TestSoakAttacker(t *testing.T) {
	if os.Getenv(soakAttackEnv) == "" {
		t.Skip("the hostile stream of TestSoakHostileInputs, run by it")
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("SOAK-READY")
	var a soakAttack
	if !in.Scan() {
		t.Fatalf("attacker: no targets: %v", in.Err())
	}
	if err := json.Unmarshal(in.Bytes(), &a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := &soak{t: t, ctx: ctx, began: time.Now(), httpURL: a.HTTPURL, mqttAddr: a.MQTTAddr, coapAddr: a.CoAPAddr,
		tally:         newSoakTally(),
		hostileClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	s.seq.Store(1_000_000) // apart from the parent's ids
	if !in.Scan() || in.Text() != "go" {
		t.Fatalf("attacker: want \"go\", got %q (%v)", in.Text(), in.Err())
	}
	s.phase2 = time.Now()
	s.phase.Store(2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range []func(<-chan struct{}){s.httpHostile, s.httpFlood, s.mqttHostile, s.coapHostile, s.coapFlood} {
		wg.Add(1)
		go func() { defer wg.Done(); f(stop) }()
	}
	in.Scan() // "stop" or EOF
	close(stop)
	wg.Wait()
	s.tally.mu.Lock()
	rep := soakAttackReport{Want: s.tally.want, Refused: s.tally.refused, Seen: s.tally.seen, Marks: s.marks}
	b, err := json.Marshal(rep)
	s.tally.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("SOAK-REPORT " + string(b))
}

// attacker is the running child process.
type attacker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	out   strings.Builder // everything it printed, for a failure message
	mu    sync.Mutex
}

// startAttacker starts the hostile stream's process first of all: its TestMain builds the
// binaries, which overlaps the services' start and must not fall into the measured phases.
func startAttacker(t *testing.T) *attacker {
	a := &attacker{lines: make(chan string, 16)}
	a.cmd = exec.Command("nice", "-n", "19", os.Args[0], "-test.run=^TestSoakAttacker$", "-test.count=1", "-test.timeout=5m")
	a.cmd.Env = append(os.Environ(), soakAttackEnv+"=1")
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	a.cmd.Stderr = os.Stderr
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			_ = a.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			l := sc.Text()
			a.mu.Lock()
			a.out.WriteString(l + "\n")
			a.mu.Unlock()
			if strings.HasPrefix(l, "SOAK-") {
				a.lines <- l
			}
		}
		close(a.lines)
	}()
	return a
}

// aim waits until the attacker is ready and tells it its targets.
func (a *attacker) aim(s *soak) {
	t := s.t
	if l := a.next(120 * time.Second); l != "SOAK-READY" {
		t.Fatalf("attacker not ready: %q\n%s", l, a.output())
	}
	cfg, _ := json.Marshal(soakAttack{HTTPURL: s.httpURL, MQTTAddr: s.mqttAddr, CoAPAddr: s.coapAddr})
	a.send(t, string(cfg))
}

func (a *attacker) output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.out.String()
}

func (a *attacker) next(timeout time.Duration) string {
	select {
	case l := <-a.lines:
		return l
	case <-time.After(timeout):
		return "(timeout)"
	}
}

func (a *attacker) send(t *testing.T, line string) {
	if _, err := io.WriteString(a.stdin, line+"\n"); err != nil {
		t.Fatalf("attacker: %v\n%s", err, a.output())
	}
}

// finish stops the stream and merges the attacker's ledger into s.tally.
func (a *attacker) finish(s *soak) {
	t := s.t
	a.send(t, "stop")
	l := a.next(60 * time.Second)
	err := a.cmd.Wait()
	rest, ok := strings.CutPrefix(l, "SOAK-REPORT ")
	if !ok || err != nil {
		t.Fatalf("attacker: %q, exit %v\n%s", l, err, a.output())
	}
	var rep soakAttackReport
	if err := json.Unmarshal([]byte(rest), &rep); err != nil {
		t.Fatal(err)
	}
	s.tally.mu.Lock()
	for r, n := range rep.Want {
		s.tally.want[r] += n
	}
	for r, n := range rep.Refused {
		s.tally.refused[r] += n
	}
	for kind, m := range rep.Seen {
		for what, n := range m {
			s.tally.note(kind, what, n)
		}
	}
	s.tally.mu.Unlock()
	s.slowMu.Lock()
	s.marks = append(s.marks, rep.Marks...)
	s.slowMu.Unlock()
}
