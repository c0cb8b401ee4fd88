package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type dbCfg struct {
	Addr     []string      `yaml:"addr"`
	Password string        `yaml:"password"`
	Timeout  time.Duration `yaml:"dial_timeout"`
}

type entry struct {
	Key    string `yaml:"key"`
	Tenant string `yaml:"tenant"`
}

type Inner struct {
	Level int `yaml:"level"`
}

type svcCfg struct {
	Inner   `yaml:",inline"`
	DB      dbCfg    `yaml:"db"`
	QoS     byte     `yaml:"qos"`
	Enabled bool     `yaml:"enabled"`
	Keys    []entry  `yaml:"keys"`
	Reload  Duration `yaml:"reload"`
	Ignored *int     `yaml:"-"`
}

// Duration checks a named duration type parses as one.
type Duration = time.Duration

func defaults() svcCfg {
	return svcCfg{DB: dbCfg{Addr: []string{"127.0.0.1:9000"}, Timeout: 5 * time.Second}, QoS: 1, Reload: time.Second}
}

func (c *svcCfg) validate() error {
	var errs []error
	if c.QoS > 2 {
		errs = append(errs, fmt.Errorf("qos: must be 0, 1 or 2, got %d", c.QoS))
	}
	if c.Reload <= 0 {
		errs = append(errs, fmt.Errorf("reload: must be positive, got %s", c.Reload))
	}
	for i, k := range c.Keys {
		if k.Tenant == "" {
			errs = append(errs, fmt.Errorf("keys[%d].tenant: required", i))
		}
	}
	return errors.Join(errs...)
}

func parse(t *testing.T, args ...string) (svcCfg, []string, error) {
	t.Helper()
	cfg := defaults()
	spec := Spec{Name: "svc run", Args: "[ARG]", Secrets: []string{"db.password"}, Validate: cfg.validate,
		Help: map[string]string{"db.addr": "database addresses", "reload": "how often to reload, as in `svc reload`"}}
	rest, err := Parse(spec, &cfg, args)
	return cfg, rest, err
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantProblem(t *testing.T, err error, want ...string) {
	t.Helper()
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("want Problems, got %T %v", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("problems %q do not contain %q", err.Error(), w)
		}
	}
}

func TestParseKeysAreFlagsAndVariables(t *testing.T) {
	path := writeFile(t, "c.yaml", "db:\n  addr: [a:1, b:2]\n  dial_timeout: 2s\nlevel: 3\nqos: 2\n")
	t.Setenv("FLEETMETER_DB_DIAL_TIMEOUT", "7s")
	t.Setenv("FLEETMETER_KEYS", "[{key: k1, tenant: acme}]")
	cfg, rest, err := parse(t, "--config", path, "--qos", "0", "--enabled", "pos")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.DB.Addr, ",") != "a:1,b:2" || cfg.DB.Timeout != 7*time.Second || cfg.Level != 3 ||
		cfg.QoS != 0 || !cfg.Enabled || len(cfg.Keys) != 1 || cfg.Keys[0].Tenant != "acme" {
		t.Fatalf("got %+v", cfg)
	}
	if len(rest) != 1 || rest[0] != "pos" {
		t.Fatalf("rest %q", rest)
	}
}

func TestParseMissingFileIsReported(t *testing.T) {
	_, _, err := parse(t, "--config", "/nonexistent/fleetmeter.yaml")
	wantProblem(t, err, "--config: config: open /nonexistent/fleetmeter.yaml")
}

func TestParseUnknownKeyNamesFileLineAndKey(t *testing.T) {
	path := writeFile(t, "c.yaml", "qos: 1\ndb:\n  adr: [x]\n")
	_, _, err := parse(t, "--config="+path)
	wantProblem(t, err, path+":3: db.adr: unknown key")
}

func TestParseValidationNamesTheSource(t *testing.T) {
	path := writeFile(t, "c.yaml", "qos: 5\nkeys:\n  - key: k\n    tenant: \"\"\n")
	_, _, err := parse(t, "--config", path)
	wantProblem(t, err, path+":1: qos: must be 0, 1 or 2, got 5", path+":4: keys[0].tenant: required")

	t.Setenv("FLEETMETER_QOS", "5")
	_, _, err = parse(t)
	wantProblem(t, err, "FLEETMETER_QOS: qos: must be 0, 1 or 2, got 5")

	_, _, err = parse(t, "--reload", "0s")
	wantProblem(t, err, "--reload: reload: must be positive")

	t.Setenv("FLEETMETER_QOS", "x")
	_, _, err = parse(t)
	wantProblem(t, err, "FLEETMETER_QOS: qos: want an unsigned integer")
}

func TestParseSecretsFromFiles(t *testing.T) {
	secret := writeFile(t, "pw", "s3cret\n")
	cfg, _, err := parse(t, "--db.password-file", secret)
	if err != nil || cfg.DB.Password != "s3cret" {
		t.Fatalf("flag: %q, %v", cfg.DB.Password, err)
	}
	t.Setenv("FLEETMETER_DB_PASSWORD_FILE", secret)
	if cfg, _, err = parse(t); err != nil || cfg.DB.Password != "s3cret" {
		t.Fatalf("env file: %q, %v", cfg.DB.Password, err)
	}
	os.Unsetenv("FLEETMETER_DB_PASSWORD_FILE")
	t.Setenv("FLEETMETER_DB_PASSWORD", "fromenv")
	if cfg, _, err = parse(t); err != nil || cfg.DB.Password != "fromenv" {
		t.Fatalf("env: %q, %v", cfg.DB.Password, err)
	}
	os.Unsetenv("FLEETMETER_DB_PASSWORD")
	path := writeFile(t, "c.yaml", "db:\n  password_file: "+secret+"\n")
	if cfg, _, err = parse(t, "--config", path); err != nil || cfg.DB.Password != "s3cret" {
		t.Fatalf("file key: %q, %v", cfg.DB.Password, err)
	}
	both := writeFile(t, "c.yaml", "db:\n  password: x\n  password_file: "+secret+"\n")
	_, _, err = parse(t, "--config", both)
	wantProblem(t, err, "db.password, db.password_file: give one, not both")
	_, _, err = parse(t, "--db.password", "x", "--db.password-file", secret)
	wantProblem(t, err, "give one, not both")
}

func TestHelpListsEveryKeyWithoutSecrets(t *testing.T) {
	t.Setenv("FLEETMETER_DB_PASSWORD", "hunter2")
	_, _, err := parse(t, "--help")
	var h *Help
	if !errors.As(err, &h) {
		t.Fatalf("want *Help, got %v", err)
	}
	for _, want := range []string{"usage: svc run [flags] [ARG]", "--db.addr list", "database addresses",
		`default "127.0.0.1:9000"`, "env FLEETMETER_DB_ADDR", "--db.dial-timeout duration", "--db.password-file FILE",
		"--reload duration", "how often to reload, as in `svc reload`", "--enabled\n", "--level int"} {
		if !strings.Contains(h.Text, want) {
			t.Errorf("help lacks %q:\n%s", want, h.Text)
		}
	}
	if strings.Contains(h.Text, "hunter2") || strings.Contains(h.Text, "ignored") {
		t.Errorf("help shows a secret or a yaml:\"-\" field:\n%s", h.Text)
	}
	var out, errOut bytes.Buffer
	if code := Exit("svc run", err, &out, &errOut); code != 0 || out.String() != h.Text || errOut.Len() != 0 {
		t.Fatalf("Exit(help) = %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

func TestExitPrintsEveryProblem(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Exit("svc run", Problems{"a: x", "b: y"}, &out, &errOut)
	if code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), "svc run: a: x\nsvc run: b: y\n") {
		t.Fatalf("code %d stdout %q stderr %q", code, out.String(), errOut.String())
	}
}

func TestKeysLimitFlagsAndVariables(t *testing.T) {
	cfg := defaults()
	_, err := Parse(Spec{Name: "svc close", Keys: []string{"db"}, Skip: []string{"db.dial_timeout"}}, &cfg, []string{"--qos", "1"})
	wantProblem(t, err, "unknown flag --qos")
	t.Setenv("FLEETMETER_QOS", "2")
	t.Setenv("FLEETMETER_DB_DIAL_TIMEOUT", "9s")
	if _, err := Parse(Spec{Name: "svc close", Keys: []string{"db"}, Skip: []string{"db.dial_timeout"}}, &cfg, nil); err != nil ||
		cfg.QoS != 1 || cfg.DB.Timeout != 5*time.Second {
		t.Fatalf("variables of keys the command does not take were applied: %+v, %v", cfg, err)
	}
}

func TestReferenceListsKeys(t *testing.T) {
	cfg := defaults()
	ref := Reference(Spec{Secrets: []string{"db.password"}, Help: map[string]string{"qos": "a | b"}}, &cfg)
	for _, want := range []string{"| `db.addr` | `127.0.0.1:9000` | `FLEETMETER_DB_ADDR` | `--db.addr` |",
		"| `db.password_file` | | `FLEETMETER_DB_PASSWORD_FILE` |", "| `qos` | `1` | `FLEETMETER_QOS` | `--qos` | a \\| b |",
		"| `level` |", "| `keys` |"} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q:\n%s", want, ref)
		}
	}
}

func TestVersionHasGoVersion(t *testing.T) {
	if v := Version("svc"); !strings.HasPrefix(v, "svc") || !strings.Contains(v, "go1.") {
		t.Fatalf("Version = %q", v)
	}
}

func TestUnexpectedArgumentsRefused(t *testing.T) {
	cfg := defaults()
	_, err := Parse(Spec{Name: "svc run"}, &cfg, []string{"stray", "--qos", "2"})
	wantProblem(t, err, `unexpected argument "stray"`)
}

func TestBadFlagValueNamesTheFlag(t *testing.T) {
	_, _, err := parse(t, "--db.dial-timeout", "soon")
	wantProblem(t, err, `invalid value "soon" for flag --db.dial-timeout: want a duration`)
}

// An alias is one more flag of a key: it sets the key, an error names it as the source,
// the help lists it with the key's variable, and the reference lists it beside the key.
func TestAliases(t *testing.T) {
	cfg := defaults()
	spec := Spec{Name: "svc run", Aliases: map[string]string{"db": "db.addr", "q": "qos"}, Validate: cfg.validate}
	if err := CheckSpec(spec, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(spec, &cfg, []string{"--db", "h:1,h:2"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.DB.Addr, ",") != "h:1,h:2" {
		t.Fatalf("--db set db.addr to %q", cfg.DB.Addr)
	}
	cfg = defaults()
	_, err := Parse(spec, &cfg, []string{"--q", "7"})
	wantProblem(t, err, "--q: qos: must be 0, 1 or 2")
	_, err = Parse(spec, &cfg, []string{"--help"})
	var h *Help
	if !errors.As(err, &h) || !strings.Contains(h.Text, "--db list\n      same as --db.addr (default \"127.0.0.1:9000\"; env FLEETMETER_DB_ADDR)") {
		t.Fatalf("help: %v", err)
	}
	if ref := Reference(spec, &cfg); !strings.Contains(ref, "`--db.addr`, `--db`") {
		t.Fatalf("reference lacks the alias:\n%s", ref)
	}
	bad := Spec{Name: "svc run", Aliases: map[string]string{"x": "db.adress"}}
	if err := CheckSpec(bad, &cfg); err == nil || !strings.Contains(err.Error(), "db.adress") {
		t.Fatalf("CheckSpec of an alias to no key: %v", err)
	}
}
