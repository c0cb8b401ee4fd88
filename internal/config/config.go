// Package config loads a binary's configuration in layers: built-in defaults, then the
// YAML file named by --config (strict: unknown keys are errors), then FLEETMETER_*
// environment variables, then command-line flags. Parse derives the flags and variables
// from the Config struct's yaml keys; Load is the older form whose flags are bound by
// hand (fleetmeter standalone and load still use it).
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Load fills cfg from the --config file found in args (if any); then define binds flags
// to cfg's fields (their defaults now show the file's values), every flag may be set by
// FLEETMETER_<NAME> (dashes and dots become underscores), and finally args are parsed.
// It returns the remaining positional arguments.
func Load(fs *flag.FlagSet, args []string, cfg any, define func(fs *flag.FlagSet)) ([]string, error) {
	path, _ := configPath(args)
	fs.String("config", path, "YAML configuration file (flags and FLEETMETER_* variables override it)")
	if path != "" {
		if err := LoadFile(path, cfg); err != nil {
			fmt.Fprintln(fs.Output(), err) // callers print only what fs.Parse does not
			return nil, err
		}
	}
	define(fs)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		if v, ok := os.LookupEnv(name); ok && f.Name != "config" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if envErr != nil {
		fmt.Fprintln(fs.Output(), envErr)
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// EnvName is the environment variable of a key or flag name: FLEETMETER_ and the name
// in upper case, dots and dashes as underscores (mqtt.client_id: FLEETMETER_MQTT_CLIENT_ID).
func EnvName(flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "FLEETMETER_" + strings.ToUpper(r.Replace(flagName))
}

// LoadFile decodes a YAML file strictly into cfg; errors name file:line and the key.
func LoadFile(path string, cfg any) error {
	if _, _, err := decodeFile(path, cfg, nil); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// StringList is a flag.Value of comma-separated strings bound to a slice.
type StringList struct{ P *[]string }

func (s StringList) String() string {
	if s.P == nil {
		return ""
	}
	return strings.Join(*s.P, ",")
}

// Set replaces the list.
func (s StringList) Set(v string) error {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	*s.P = out
	return nil
}
