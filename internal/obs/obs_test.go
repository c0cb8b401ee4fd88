package obs

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every registry carries the build information; a listening server reports each
// readiness check at scrape time.
func TestBuildInfoAndReadiness(t *testing.T) {
	reg := NewRegistry()
	var down error = errors.New("kafka unreachable")
	srv, err := Listen("127.0.0.1:0", reg,
		Check{Name: "up", Fn: func(context.Context) error { return nil }},
		Check{Name: "down", Fn: func(context.Context) error { return down }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.ln.Close()
	exp := `
# HELP fleetmeter_ready 1 while the component's readiness check (as /readyz) passes, else 0.
# TYPE fleetmeter_ready gauge
fleetmeter_ready{check="down"} 0
fleetmeter_ready{check="up"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "fleetmeter_ready"); err != nil {
		t.Fatal(err)
	}
	down = nil
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(exp, `"down"} 0`, `"down"} 1`, 1)),
		"fleetmeter_ready"); err != nil {
		t.Fatal(err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "fleetmeter_build_info" {
			continue
		}
		labels := map[string]string{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["goversion"] != runtime.Version() || f.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("build info %v = %v, want goversion %s = 1", labels, f.GetMetric()[0].GetGauge().GetValue(), runtime.Version())
		}
		if _, ok := labels["version"]; !ok {
			t.Fatal("build info without version")
		}
		if _, ok := labels["revision"]; !ok {
			t.Fatal("build info without revision")
		}
		return
	}
	t.Fatal("fleetmeter_build_info missing")
}

// The profiles are served only once Pprof turned them on.
func TestPprofOffByDefault(t *testing.T) {
	get := func(srv *Server) int {
		resp, err := http.Get("http://" + srv.Addr() + "/debug/pprof/heap")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, on := range []bool{false, true} {
		srv, err := Listen("127.0.0.1:0", NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if on {
			srv.Pprof()
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if code := get(srv); code != want {
			t.Errorf("pprof on %v: /debug/pprof/heap answered %d, want %d", on, code, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
