package cdrdir

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"fleetmeter/cdr"
)

func cdrRule(tenant string, sst *uint8) cdr.TenantRule {
	return cdr.TenantRule{Tenant: tenant, SliceSST: sst}
}

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Dir = "/drop"
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Dir = "" }, "cdr.dir: required"},
		{func(c *Config) { c.Done = "/drop/" }, "cdr.done: must differ from cdr.dir"},
		{func(c *Config) { c.Failed = "/drop/done" }, "cdr.failed: must differ from cdr.done"},
		{func(c *Config) { c.Pattern = "[" }, "cdr.pattern"},
		{func(c *Config) { c.Pattern = "" }, "cdr.pattern: required"},
		{func(c *Config) { c.Settle = -time.Second }, "cdr.settle"},
		{func(c *Config) { c.Poll = 0 }, "cdr.poll"},
		{func(c *Config) { c.ChunkRecords = 0 }, "cdr.chunk_records"},
		{func(c *Config) { c.MaxFileBytes = 0 }, "cdr.max_file_bytes"},
		{func(c *Config) { c.Decoder.Tenants.Rules = []cdr.TenantRule{{Tenant: "x"}} }, "cdr.tenants.rules[0]: needs at least one"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
		if _, nerr := New(c, &fakeSink{}, nil, nil); nerr == nil {
			t.Errorf("New accepted a config with %q", tc.want)
		}
	}
}

// The sample configuration decodes strictly and validates; tenants sit inline.
func TestSampleConfig(t *testing.T) {
	b, err := os.ReadFile("cdrdir.sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CDR Config `yaml:"cdr"`
	}
	doc.CDR = DefaultConfig()
	if err := yaml.UnmarshalWithOptions(b, &doc, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	c := doc.CDR
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Dir != "/var/spool/fleetmeter/cdr" || c.Settle != 2*time.Second || c.Decoder.Tenants.Default != "acme" ||
		len(c.Decoder.Tenants.Rules) != 2 || c.Decoder.Tenants.Rules[1].SliceSST == nil {
		t.Errorf("decoded %+v", c)
	}
	if err := yaml.UnmarshalWithOptions([]byte("cdr:\n  dir: /x\n  setle: 1s\n"), &doc, yaml.Strict()); err == nil {
		t.Error("unknown key accepted")
	}
}
