package loadtest

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"fleetmeter/internal/localkafka"
	"fleetmeter/internal/netport"
)

// RunKafkaBroker is the embedded Kafka broker as a process of its own, so the benchmark
// report measures its CPU and memory apart: `<binary> kafka-broker --dir D --partitions N`
// prints "kafka ADDR" once it listens and runs until SIGTERM.
func RunKafkaBroker(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kafka-broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "data directory")
	partitions := fs.Int("partitions", 4, "default partitions of created topics")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, addr, err := localkafka.Start(*dir, 0, int32(*partitions))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer kc.Close()
	fmt.Fprintln(stdout, "kafka", addr)
	<-ctx.Done()
	return 0
}

// Process is a child process of a measurement: its CPU time and peak memory are read
// from /proc while it runs.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Pid  int
	log  *os.File
	done chan struct{}
}

// StartProcess runs argv with its output in logDir/<name>.log.
func StartProcess(name, logDir string, argv ...string) (*Process, error) {
	f, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, Pid: cmd.Process.Pid, log: f, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to grace, then kills the process group.
func (p *Process) Stop(grace time.Duration) {
	if p.Cmd == nil {
		return
	}
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	p.log.Close()
}

// Output is the end of the process's log.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.log.Name())
	return tail(string(b), 3000)
}

// waitLine waits for a line starting with prefix in the process's log and returns the rest.
func (p *Process) waitLine(prefix string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.log.Name())
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		}
		if p.Exited() {
			return "", fmt.Errorf("%s exited: %s", p.Name, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("%s: no %q line within %s: %s", p.Name, prefix, timeout, p.Output())
}

// CPUTime is the user+system time a live process has used (from /proc/PID/stat).
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// findPid returns the pid of the first process whose command line contains s.
func findPid(s string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), s) {
			return pid
		}
	}
	return 0
}

// StartMosquitto runs Mosquitto on loopback port (0: a free one) with unbounded queues (a
// persistent session never drops QoS 1 messages), its configuration and log in dir. It
// returns the process and host:port once it accepts connections.
func StartMosquitto(dir string, port int) (*Process, string, error) {
	bin := mosquittoPath()
	if bin == "" {
		return nil, "", fmt.Errorf("mosquitto is not installed: run `make deps` (scripts/deps.sh)")
	}
	if port == 0 {
		var err error
		if port, err = netport.Stable(); err != nil {
			return nil, "", err
		}
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 0\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, "", err
	}
	p, err := StartProcess("mosquitto", dir, bin, "-c", conf)
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitTCP(addr, p, 20*time.Second); err != nil {
		p.Stop(time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

func waitTCP(addr string, p *Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited: %s", p.Name, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s: %s", p.Name, addr, p.Output())
}

// mosquittoPath finds the mosquitto binary (Debian installs it in /usr/sbin, often not
// on PATH); "" when it is not installed.
func mosquittoPath() string {
	for _, p := range []string{"mosquitto", "/usr/sbin/mosquitto", "/usr/bin/mosquitto"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}
