package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// journal records what happened in which order.
type journal struct {
	mu  sync.Mutex
	log []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log = append(j.log, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.log)
}

// component runs until ctx ends, then takes drain to return, journaling both ends.
func component(j *journal, name string, drain time.Duration) Component {
	return Component{Name: name,
		Run: func(ctx context.Context) error {
			<-ctx.Done()
			j.add("stopping " + name)
			time.Sleep(drain)
			j.add("stopped " + name)
			return nil
		},
		Close: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("close without a deadline")
			}
			j.add("closed " + name)
			return nil
		}}
}

// A stage is stopped only once the stage before it has returned, even when that takes
// a while; Close follows in the same order once every stage has stopped.
func TestStopsStagesInOrder(t *testing.T) {
	var j journal
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	err := Run(ctx, nil,
		Stage{Name: "edge", Components: []Component{component(&j, "ingest", 50*time.Millisecond)}},
		Stage{Name: "core", Components: []Component{component(&j, "rater", 0), component(&j, "loader", 0)}},
		Stage{Name: "infra", Components: []Component{{Name: "db", Close: func(context.Context) error { j.add("closed db"); return nil }}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	got := j.get()
	idx := func(s string) int {
		i := slices.Index(got, s)
		if i < 0 {
			t.Fatalf("%q never happened: %q", s, got)
		}
		return i
	}
	if idx("stopped ingest") > idx("stopping rater") || idx("stopped ingest") > idx("stopping loader") {
		t.Errorf("core stopped before edge had returned: %q", got)
	}
	for _, c := range []string{"ingest", "rater", "loader"} {
		if idx("closed "+c) < idx("stopped loader") || idx("closed "+c) < idx("stopped rater") {
			t.Errorf("%s closed before every stage had stopped: %q", c, got)
		}
	}
	if idx("closed ingest") > idx("closed rater") || idx("closed loader") > idx("closed db") {
		t.Errorf("closes not in stage order: %q", got)
	}
}

// A component that fails stops the process: Run returns its error without ctx ending,
// after stopping the others.
func TestFailureStopsAll(t *testing.T) {
	var j journal
	boom := errors.New("boom")
	err := Run(context.Background(), nil,
		Stage{Name: "a", Components: []Component{component(&j, "server", 0)}},
		Stage{Name: "b", Components: []Component{{Name: "broken", Run: func(context.Context) error { return boom }}}},
	)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("got %v; want boom naming the component", err)
	}
	if !slices.Contains(j.get(), "stopped server") {
		t.Fatalf("the other component was not stopped: %q", j.get())
	}
	// A return without an error before the stop is a failure too.
	err = Run(context.Background(), nil, Stage{Name: "a", Components: []Component{
		{Name: "quitter", Run: func(context.Context) error { return nil }}}})
	if err == nil || !strings.Contains(err.Error(), "quitter: stopped unexpectedly") {
		t.Fatalf("got %v", err)
	}
}

// A component that does not drain within its stage's Drain does not hold the process:
// Run goes on with the next stages and reports it.
func TestDrainDeadline(t *testing.T) {
	var j journal
	hung := make(chan struct{})
	defer close(hung)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	began := time.Now()
	err := Run(ctx, nil,
		Stage{Name: "edge", Drain: 100 * time.Millisecond, Components: []Component{
			{Name: "stuck", Run: func(context.Context) error { <-hung; return nil }}}},
		Stage{Name: "core", Components: []Component{component(&j, "rater", 0)}},
	)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Run took %s with a drain deadline of 100ms", took)
	}
	if err == nil || !strings.Contains(err.Error(), "stage edge") {
		t.Fatalf("got %v; want the missed deadline named", err)
	}
	if !slices.Contains(j.get(), "stopped rater") {
		t.Fatalf("the next stage was not stopped: %q", j.get())
	}
}

func TestChecks(t *testing.T) {
	ready := func(context.Context) error { return nil }
	checks := Checks(Stage{Components: []Component{{Name: "a", Ready: ready}, {Name: "b"}}},
		Stage{Components: []Component{{Name: "c", Ready: ready}}})
	if len(checks) != 2 || checks[0].Name != "a" || checks[1].Name != "c" {
		t.Fatalf("got %+v", checks)
	}
}
