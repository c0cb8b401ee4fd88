// Package lifecycle is the contract of a binary's long-running parts and the one place
// where they are started and stopped. A binary's main builds its components (every
// configuration error already reported), lists them in stages in the order they are to
// stop, and calls Run; the order reads top to bottom in that list.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"fleetmeter/internal/obs"
)

// Component is one long-running part of a process.
type Component struct {
	Name string
	// Run serves until ctx ends, then drains what it holds (answers or refuses the
	// requests in hand, ends its transaction, commits what it wrote) and returns nil. Any
	// return before its stage is stopped, error or not, stops the whole process.
	Run func(ctx context.Context) error
	// Ready reports whether the component serves, for /readyz (optional).
	Ready func(ctx context.Context) error
	// Close releases what Run leaves behind (a connection pool, a child process) once
	// every stage has stopped; ctx carries the deadline (optional).
	Close func(ctx context.Context) error
}

// Stage is components stopped together: the next stage is stopped once all of them have
// returned, or once Drain has passed (0: no bound).
type Stage struct {
	Name       string
	Drain      time.Duration
	Components []Component
}

// CloseTimeout bounds each Close.
const CloseTimeout = 30 * time.Second

// Run starts every component at once and runs them until ctx ends or one of them
// returns. Then it stops the stages in the order given, each after the one before has
// returned, and calls every Close in the same order. It returns the errors of the
// components (a drain deadline missed is one) and of the Closes, joined, or nil.
func Run(ctx context.Context, logger *slog.Logger, stages ...Stage) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	type result struct {
		name string
		err  error
	}
	// Each stage runs under its own context, detached from ctx's cancellation, so that
	// stopping is in this function's hands and in stage order.
	cancels := make([]context.CancelFunc, len(stages))
	dones := make([]chan result, len(stages))
	first := make(chan result, 1)
	report := func(r result) {
		select {
		case first <- r:
		default:
		}
	}
	for i, st := range stages {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[i] = cancel
		dones[i] = make(chan result, len(st.Components))
		for _, c := range st.Components {
			if c.Run == nil {
				continue
			}
			go func() {
				err := c.Run(sctx)
				if sctx.Err() == nil { // before its stage was stopped
					if err == nil {
						err = errors.New("stopped unexpectedly")
					}
					report(result{c.Name, err})
				}
				dones[i] <- result{c.Name, err}
			}()
		}
	}

	var errs []error
	select {
	case <-ctx.Done():
		logger.Info("stopping", "cause", context.Cause(ctx))
	case r := <-first:
		logger.Error("stopping: a component stopped", "component", r.name, "err", r.err)
	}
	for i, st := range stages {
		cancels[i]()
		var deadline <-chan time.Time
		if st.Drain > 0 {
			t := time.NewTimer(st.Drain)
			defer t.Stop()
			deadline = t.C
		}
	wait:
		for n := countRuns(st); n > 0; n-- {
			select {
			case r := <-dones[i]:
				if r.err != nil && !errors.Is(r.err, context.Canceled) {
					errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
				}
			case <-deadline:
				err := fmt.Errorf("stage %s: %d component(s) still draining after %s; going on without them", st.Name, n, st.Drain)
				logger.Error("stop", "err", err)
				errs = append(errs, err)
				break wait
			}
		}
		logger.Debug("stage stopped", "stage", st.Name)
	}
	return errors.Join(append(errs, Close(stages...))...)
}

// Close calls every Close of the stages in order, each bounded by CloseTimeout: what Run
// does once the stages have stopped, and what a start that failed half-way does with
// the components started so far.
func Close(stages ...Stage) error {
	var errs []error
	for _, st := range stages {
		for _, c := range st.Components {
			if c.Close == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), CloseTimeout)
			if err := c.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", c.Name, err))
			}
			cancel()
		}
	}
	return errors.Join(errs...)
}

func countRuns(st Stage) int {
	n := 0
	for _, c := range st.Components {
		if c.Run != nil {
			n++
		}
	}
	return n
}

// Checks are the readiness checks of the components that have one, for obs.Listen.
func Checks(stages ...Stage) []obs.Check {
	var out []obs.Check
	for _, st := range stages {
		for _, c := range st.Components {
			if c.Ready != nil {
				out = append(out, obs.Check{Name: c.Name, Fn: c.Ready})
			}
		}
	}
	return out
}
