package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/internal/config"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// rater run --reload 0 used to panic in time.NewTicker once connected; it is refused
// before anything connects, naming the key. The other cases used to exit 2 silently.
func TestStreamConfigErrorsArePrinted(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "rater.yaml")
	if err := os.WriteFile(bad, []byte("group: g\nclickhouse:\n  adress: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"run", "--reload", "0", "--kafka.brokers", "127.0.0.1:1"}, nil, "--reload: reload: must be positive"},
		{[]string{"run"}, map[string]string{"FLEETMETER_RELOAD": "0s"}, "FLEETMETER_RELOAD: reload: must be positive"},
		{[]string{"load", "--close-after", "1h", "--reload", "0"}, nil, "--reload: reload: must be positive"},
		{[]string{"run", "--config", "/nonexistent.yaml"}, nil, "--config: config: open /nonexistent.yaml"},
		{[]string{"load", "--config", bad}, nil, bad + ":3: clickhouse.adress: unknown key"},
		{[]string{"load"}, map[string]string{"FLEETMETER_CLICKHOUSE_DATABASE": "no-dashes"}, "FLEETMETER_CLICKHOUSE_DATABASE: clickhouse.database:"},
		{[]string{"close", "--period", "2026-13"}, nil, "--period: want YYYY-MM"},
		{[]string{"close"}, nil, "--period: want YYYY-MM"},
		{[]string{"run", "--clickhouse.addr", "x:1"}, nil, "unknown flag --clickhouse.addr"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := run(t, c.args...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, c.want)
			}
		})
	}
}

func TestHelpPerSubcommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "--help"}, {"load", "--help"}, {"close", "-h"},
		{"rules", "--help"}, {"rules", "check", "--help"}, {"rate", "--help"}} {
		code, stdout, stderr := run(t, args...)
		if code != 0 || stdout == "" || stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 0 and help on stdout only", args, code, stdout, stderr)
		}
	}
	_, runHelp, _ := run(t, "run", "--help")
	_, loadHelp, _ := run(t, "load", "--help")
	_, closeHelp, _ := run(t, "close", "--help")
	for _, c := range []struct {
		help      string
		has, lack []string
	}{
		{runHelp, []string{"--reload duration", "--instance string", "--kafka.session-timeout"}, []string{"--clickhouse", "--close-after", "--load-group", "--period"}},
		{loadHelp, []string{"--clickhouse.password-file FILE", "--close-after duration", "env FLEETMETER_CLICKHOUSE_PASSWORD"}, []string{"--group ", "--period"}},
		{closeHelp, []string{"--period", "--clickhouse.addr"}, []string{"--kafka.", "--close-after"}},
	} {
		for _, s := range c.has {
			if !strings.Contains(c.help, s) {
				t.Errorf("help lacks %q:\n%s", s, c.help)
			}
		}
		for _, s := range c.lack {
			if strings.Contains(c.help, s) {
				t.Errorf("help lists %q, a flag of another subcommand:\n%s", s, c.help)
			}
		}
	}
	// The usage text once held `rater close` in backquotes, which the flag package
	// took for the value's name: "-close-after rater close".
	if strings.Contains(loadHelp, "close-after rater") {
		t.Errorf("--close-after renders with a backquoted name:\n%s", loadHelp)
	}
}

func TestRulesCheckHelpIsNotAFile(t *testing.T) {
	code, stdout, _ := run(t, "rules", "check", "--help")
	if code != 0 || strings.Contains(stdout, "--help:0") || !strings.Contains(stdout, "usage: rater rules check") {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := run(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "rater ") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("exit %d, %q", code, stdout)
	}
}

func TestClickHousePasswordFromEnvAndFile(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) streamConfig {
		t.Helper()
		cfg := defaultStream()
		var period string
		if _, err := config.Parse(streamSpec("rater load", &cfg, &period), &cfg, args); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Setenv("FLEETMETER_CLICKHOUSE_PASSWORD", "fromenv")
	if got := parse().ClickHouse.Password; got != "fromenv" {
		t.Fatalf("FLEETMETER_CLICKHOUSE_PASSWORD: got %q", got)
	}
	os.Unsetenv("FLEETMETER_CLICKHOUSE_PASSWORD")
	t.Setenv("FLEETMETER_CLICKHOUSE_PASSWORD_FILE", pw)
	if got := parse().ClickHouse.Password; got != "s3cret" {
		t.Fatalf("FLEETMETER_CLICKHOUSE_PASSWORD_FILE: got %q", got)
	}
	os.Unsetenv("FLEETMETER_CLICKHOUSE_PASSWORD_FILE")
	conf := filepath.Join(t.TempDir(), "rater.yaml")
	if err := os.WriteFile(conf, []byte("clickhouse:\n  password_file: "+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := parse("--config", conf).ClickHouse.Password; got != "s3cret" {
		t.Fatalf("clickhouse.password_file: got %q", got)
	}
}

// docs/configuration.md's rater section is generated from streamConfig; with
// FLEETMETER_UPDATE_DOCS=1 this test rewrites it, else it fails when it is stale.
func TestConfigurationReference(t *testing.T) {
	cfg := defaultStream()
	cfg.Instance = "<hostname>" // the default varies by machine
	var period string
	spec := streamSpec("rater", &cfg, &period) // every key: the file is shared
	for _, name := range []string{"rater run", "rater load", "rater close"} {
		if err := config.CheckSpec(streamSpec(name, &cfg, &period), &cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := config.SyncReference("../../docs/configuration.md", "rater", config.Reference(spec, &cfg)); err != nil {
		t.Fatal(err)
	}
}
