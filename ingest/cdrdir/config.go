package cdrdir

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"fleetmeter/cdr"
)

// Config of the drop-directory collector. Its YAML key in the mediator configuration is
// "cdr"; Validate names keys under it.
type Config struct {
	Enabled bool   `yaml:"enabled"`
	Dir     string `yaml:"dir"`     // the drop directory the CHF writes into
	Done    string `yaml:"done"`    // where finished files go; default <dir>/done
	Failed  string `yaml:"failed"`  // damaged files, each in a folder <name>/ with reason.json; default <dir>/failed
	Pattern string `yaml:"pattern"` // glob on the file name, e.g. "*.cdr"
	// Settle is how long a file's size and mtime must stay unchanged before it is taken.
	Settle time.Duration `yaml:"settle"`
	Poll   time.Duration `yaml:"poll"` // how often Dir is listed
	// ChunkRecords is how many records one sink call carries.
	ChunkRecords int `yaml:"chunk_records"`
	// MaxFileBytes bounds memory: a larger file is not read but moved to failed/.
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// Decoder holds the tenant map (keys tenants.default and tenants.rules).
	Decoder cdr.Config `yaml:",inline"`
}

// DefaultConfig returns the collector defaults; Dir has none.
func DefaultConfig() Config {
	return Config{
		Pattern:      "*",
		Settle:       2 * time.Second,
		Poll:         time.Second,
		ChunkRecords: 5000,
		MaxFileBytes: 256 << 20,
		Decoder:      cdr.DefaultConfig(),
	}
}

// withDefaults fills the directories that default relative to Dir.
func (c Config) withDefaults() Config {
	if c.Done == "" && c.Dir != "" {
		c.Done = filepath.Join(c.Dir, "done")
	}
	if c.Failed == "" && c.Dir != "" {
		c.Failed = filepath.Join(c.Dir, "failed")
	}
	return c
}

// Validate reports every problem, naming the key.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("cdr.dir: required (the drop directory)"))
	} else {
		dir := filepath.Clean(c.Dir)
		if filepath.Clean(c.Done) == dir {
			errs = append(errs, fmt.Errorf("cdr.done: must differ from cdr.dir %q", c.Dir))
		}
		if filepath.Clean(c.Failed) == dir {
			errs = append(errs, fmt.Errorf("cdr.failed: must differ from cdr.dir %q", c.Dir))
		}
		if filepath.Clean(c.Done) == filepath.Clean(c.Failed) {
			errs = append(errs, fmt.Errorf("cdr.failed: must differ from cdr.done %q", c.Done))
		}
	}
	if c.Pattern == "" {
		errs = append(errs, errors.New(`cdr.pattern: required ("*" takes every file)`))
	} else if _, err := filepath.Match(c.Pattern, "x"); err != nil {
		errs = append(errs, fmt.Errorf("cdr.pattern: %q: %w", c.Pattern, err))
	}
	if c.Settle < 0 || c.Settle > time.Hour {
		errs = append(errs, fmt.Errorf("cdr.settle: must be within [0, 1h], got %s", c.Settle))
	}
	if c.Poll <= 0 || c.Poll > time.Hour {
		errs = append(errs, fmt.Errorf("cdr.poll: must be within (0, 1h], got %s", c.Poll))
	}
	if c.ChunkRecords < 1 {
		errs = append(errs, fmt.Errorf("cdr.chunk_records: must be >= 1, got %d", c.ChunkRecords))
	}
	if c.MaxFileBytes < 1 {
		errs = append(errs, fmt.Errorf("cdr.max_file_bytes: must be >= 1, got %d", c.MaxFileBytes))
	}
	if err := c.Decoder.Validate(); err != nil {
		errs = append(errs, prefixErrors("cdr.", err))
	}
	return errors.Join(errs...)
}

// prefixErrors puts prefix before each message of a joined error, so the decoder's
// "tenants.rules[0]..." reads as the full key "cdr.tenants.rules[0]...".
func prefixErrors(prefix string, err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		out = append(out, errors.New(prefix+line))
	}
	return errors.Join(out...)
}
