package main

import (
	"bytes"
	"strings"
	"testing"

	"fleetmeter/internal/config"
)

func dispatch(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = config.Dispatch("fleetmeter", commands, args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpAndVersionOnStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"standalone", "--help"}, {"load", "-h"}} {
		code, stdout, stderr := dispatch(args...)
		if code != 0 || stdout == "" || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and help on stdout only", args, code, stdout, stderr)
		}
	}
	if code, stdout, _ := dispatch("--version"); code != 0 || !strings.HasPrefix(stdout, "fleetmeter ") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
	if code, _, stderr := dispatch("nonsense"); code != 2 || !strings.Contains(stderr, `unknown command "nonsense"`) {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
}

// fleetmeter standalone used to exit 2 silently on these.
func TestStandaloneConfigErrorsArePrinted(t *testing.T) {
	code, _, stderr := dispatch("standalone", "--config", "/nonexistent.yaml")
	if code != 2 || !strings.Contains(stderr, "/nonexistent.yaml: no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("FLEETMETER_SIMULATE", "many")
	code, _, stderr = dispatch("standalone", "--data", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "FLEETMETER_SIMULATE") {
		t.Errorf("bad variable: exit %d, stderr %q", code, stderr)
	}
}
