package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testCfg struct {
	Brokers []string `yaml:"brokers"`
	Group   string   `yaml:"group"`
	Workers int      `yaml:"workers"`
}

func load(t *testing.T, args []string) (testCfg, error) {
	t.Helper()
	cfg := testCfg{Group: "default", Workers: 1}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	_, err := Load(fs, args, &cfg, func(fs *flag.FlagSet) {
		fs.Var(StringList{&cfg.Brokers}, "brokers", "")
		fs.StringVar(&cfg.Group, "group", cfg.Group, "")
		fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "")
	})
	return cfg, err
}

func TestLayers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("brokers: [a:1, b:2]\ngroup: fromfile\nworkers: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLEETMETER_WORKERS", "5")
	cfg, err := load(t, []string{"--config", path, "--group", "fromflag"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Brokers, ",") != "a:1,b:2" || cfg.Group != "fromflag" || cfg.Workers != 5 {
		t.Fatalf("got %+v; want brokers from file, group from flag, workers from env", cfg)
	}
}

func TestUnknownKeyNamesLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("group: x\nbrokerz: [a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := load(t, []string{"--config=" + path})
	if err == nil || !strings.Contains(err.Error(), "brokerz") || !strings.Contains(err.Error(), "2:") {
		t.Fatalf("want an error naming key brokerz on line 2, got %v", err)
	}
}
