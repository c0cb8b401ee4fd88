package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fleetmeter/internal/netport"
	"fleetmeter/loadtest"
)

// binDir holds the project's binaries, built once per test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetmeter-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/mediator", "../cmd/rater", "../cmd/fleetmeter")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	return stablePort(t)
}

// stablePort returns a loopback port that is free for both TCP and UDP and lies outside the
// ephemeral range (netport.Stable, as the standalone pipeline takes its own). A service
// restarted on the same port must find it free: an ephemeral port can be taken meanwhile
// by one of the test's own client sockets (a CoAP client redialing while the server is
// down did exactly that).
func stablePort(t testing.TB) int {
	t.Helper()
	p, err := netport.Stable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// tool finds a third-party program or fails the test: `make test` installs them all.
func tool(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s is not installed: run `make deps` (scripts/deps.sh)", name)
	return ""
}

// proc is a child process whose output is kept for the failure message.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.out.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// start runs a process until the test ends (SIGTERM, then SIGKILL).
func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(name), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// startMosquitto runs a real Mosquitto on a free loopback port (loadtest's start-up, which
// the benchmark report shares). Queues are unbounded so a persistent session never drops
// QoS 1 messages while the mediator is away.
func startMosquitto(t testing.TB) string {
	t.Helper()
	p, a, err := loadtest.StartMosquitto(t.TempDir(), freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("--- output of mosquitto:\n%s", p.Output())
		}
	})
	return a
}

func waitTCP(t testing.TB, a string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %s", p.name, p.output())
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %s: %s", p.name, a, p.output())
}

// waitReady polls an HTTP /readyz until it answers 200.
func waitReady(t testing.TB, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b := new(bytes.Buffer)
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = b.String()
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %s", p.name, p.output())
		default:
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s: %s", p.name, url, last)
}

// run executes a command to completion and returns its stdout.
func run(t testing.TB, ctx context.Context, name string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}
