// Package chserver runs a local clickhouse-server as a child process: for tests, and for
// the standalone mode that runs the whole pipeline on one machine. The config it writes
// keeps to what ClickHouse 18.16 (Debian) understands, which current servers also accept.
package chserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"fleetmeter/internal/netport"
)

// ErrNotInstalled says no clickhouse-server binary was found.
var ErrNotInstalled = errors.New("clickhouse-server not found: install with `apt-get install clickhouse-server` or point --clickhouse at a server")

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
	// A free port picked by the kernel can be taken before the server binds it; such a
	// start is retried with new ports.
	portAttempts = 3
)

// Server is a running clickhouse-server child process.
type Server struct {
	dir      string
	logger   *slog.Logger
	cmd      *exec.Cmd
	ports    []int // native, http, interserver
	tcpPort  int
	httpPort int
	password string // of user default; empty: none

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Binary finds the server: clickhouse-server on PATH or in /usr/bin or /usr/sbin (where
// Debian puts it), else the single clickhouse binary with its "server" subcommand.
func Binary() (path string, args []string, err error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil, nil
	}
	for _, p := range []string{"/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"} {
		if isExecutable(p) {
			return p, nil, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return p, []string{"server"}, nil
	}
	if p := "/usr/bin/clickhouse"; isExecutable(p) {
		return p, []string{"server"}, nil
	}
	return "", nil, ErrNotInstalled
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Option changes how Start configures the server.
type Option func(*Server)

// WithPassword makes user default log in with password (users.xml holds its SHA-256 only);
// without it the user has no password, which suits a test's throwaway server.
func WithPassword(password string) Option { return func(s *Server) { s.password = password } }

// Start writes a config under dataDir, starts clickhouse-server on free loopback ports and
// returns once it answers a native ping. ctx bounds the startup only; the server runs
// until Stop (or until this process dies: the child gets SIGTERM then).
func Start(ctx context.Context, dataDir string, logger *slog.Logger, opts ...Option) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o Server
	for _, opt := range opts {
		opt(&o)
	}
	bin, args, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	for _, sub := range []string{"data", "tmp", "user_files", "format_schemas", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("start clickhouse: %w", err)
		}
	}
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, bin, args, dir, o.password, logger)
		if err == nil {
			return s, nil
		}
		var busy *portBusyError
		if !errors.As(err, &busy) || attempt == portAttempts {
			return nil, err
		}
		logger.Warn("clickhouse port taken, retrying with new ports", "attempt", attempt)
	}
}

type portBusyError struct{ err error }

func (e *portBusyError) Error() string { return e.err.Error() }
func (e *portBusyError) Unwrap() error { return e.err }

func start(ctx context.Context, bin string, args []string, dir, password string, logger *slog.Logger) (*Server, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	return startOn(ctx, bin, args, dir, password, ports, logger)
}

// Restart starts a stopped server again on its data directory and ports, as an operator
// restarting it would: clients reconnect to the same address.
func (s *Server) Restart(ctx context.Context) (*Server, error) {
	bin, args, err := Binary()
	if err != nil {
		return nil, err
	}
	return startOn(ctx, bin, args, s.dir, s.password, s.ports, s.logger)
}

func startOn(ctx context.Context, bin string, args []string, dir, password string, ports []int, logger *slog.Logger) (*Server, error) {
	cfg := filepath.Join(dir, "config.xml")
	if err := writeConfig(dir, password, ports[0], ports[1], ports[2]); err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dir, "logs", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	defer out.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, append(args, "--config-file="+cfg)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group so Stop can signal the server and anything it forks; Pdeathsig so
	// a crashed parent (kill -9 in a test or in standalone mode) does not leave an orphan
	// server holding the data directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start clickhouse: %w", err)
	}
	s := &Server{dir: dir, logger: logger, cmd: cmd, tcpPort: ports[0], httpPort: ports[1], ports: ports, password: password,
		done: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	logger.Info("clickhouse starting", "pid", cmd.Process.Pid, "native", s.NativeAddr(), "http", s.HTTPAddr(), "dir", dir)

	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		tail := s.logTail()
		if containsAny(tail, "Address already in use", "DNSResolver: Cannot resolve") {
			return nil, &portBusyError{fmt.Errorf("start clickhouse: %w\n%s", err, tail)}
		}
		return nil, fmt.Errorf("start clickhouse: %w\nlog tail (%s):\n%s", err, filepath.Join(dir, "logs"), tail)
	}
	logger.Info("clickhouse ready", "native", s.NativeAddr())
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ping(ctx, s.NativeAddr(), s.password); last == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("server exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w (last ping: %v)", startTimeout, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// NativeAddr is host:port of the native protocol (what clickhouse-go and
// clickhouse-client speak).
func (s *Server) NativeAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tcpPort)) }

// HTTPAddr is host:port of the HTTP interface.
func (s *Server) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort)) }

// Password is user default's password ("" without WithPassword).
func (s *Server) Password() string { return s.password }

// Dir is the data directory the server runs in.
func (s *Server) Dir() string { return s.dir }

// Wait blocks until the server exits and returns its exit error (nil after a clean Stop).
func (s *Server) Wait() error {
	<-s.done
	return s.exitErr()
}

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) exitErr() error {
	if s.waitErr == nil {
		return nil
	}
	return fmt.Errorf("clickhouse-server exited: %w", s.waitErr)
}

// Stop sends SIGTERM to the server's process group, waits for it to shut down and kills it
// if it has not after a timeout. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		pgid := -s.cmd.Process.Pid
		select {
		case <-s.done:
			s.stopErr = s.exitErr()
			return
		default:
		}
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-s.done:
			// Exit after SIGTERM is the expected outcome, whatever the status.
			s.logger.Info("clickhouse stopped", "native", s.NativeAddr())
		case <-time.After(stopTimeout):
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			<-s.done
			s.stopErr = fmt.Errorf("stop clickhouse: killed after %s without exiting on SIGTERM", stopTimeout)
		}
	})
	return s.stopErr
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		p, err := netport.Stable()
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		ports = append(ports, p)
	}
	return ports, nil
}
