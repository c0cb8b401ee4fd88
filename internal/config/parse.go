package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// Spec describes one command's configuration. Its flags and environment variables are
// derived from the yaml keys of the Config struct given to Parse: key mqtt.client_id is
// flag --mqtt.client-id and variable FLEETMETER_MQTT_CLIENT_ID.
type Spec struct {
	Name    string // as typed: "rater run"
	Summary string // one line under the usage
	Args    string // positional arguments, for the usage line ("" for none)
	// Keys limits the flags and variables to these keys and the sections under them
	// (nil: every key); Skip removes keys from them. The file may hold every key: a file
	// shared by several commands is not an error.
	Keys, Skip []string
	Help       map[string]string // key -> what it does
	// Secrets are keys whose values are never shown; each has a <key>_file variant in the
	// file, the environment and the flags that reads the value from a file, so secrets
	// need not sit on command lines or in the configuration.
	Secrets []string
	// Aliases are further flag names of keys (flag name without dashes -> key), kept for
	// command lines written before the keys existed: fleetmeter standalone --kafka ADDR is
	// --kafka.brokers ADDR. An error names the alias when the value came from it.
	Aliases map[string]string
	// Extra defines the flags that are no configuration key (rater close --period).
	Extra func(fs *flag.FlagSet)
	// Validate checks the whole configuration once every layer is applied; its messages
	// start with the key ("mqtt.qos: must be 0, 1 or 2"), which Parse prefixes with where
	// the value came from.
	Validate func() error
}

// Problems is every configuration error of a command, one per line, each naming its key
// and where the value came from (file:line, environment variable or flag).
type Problems []string

func (p Problems) Error() string { return strings.Join(p, "\n") }

// Help is returned by Parse for --help: Text is the usage, for stdout.
type Help struct{ Text string }

func (h *Help) Error() string { return "help requested" }

// Exit prints Parse's error as every command does and returns the exit status: usage
// on stdout with 0 for --help, else each problem on stderr with 2.
func Exit(name string, err error, stdout, stderr io.Writer) int {
	var h *Help
	if errors.As(err, &h) {
		fmt.Fprint(stdout, h.Text)
		return 0
	}
	var p Problems
	if !errors.As(err, &p) {
		p = Problems{err.Error()}
	}
	for _, line := range p {
		fmt.Fprintf(stderr, "%s: %s\n", name, line)
	}
	fmt.Fprintf(stderr, "%s: see %s --help\n", name, name)
	return 2
}

// Parse fills cfg, a pointer to a struct holding the defaults, from the file named by
// --config (or FLEETMETER_CONFIG), then the FLEETMETER_* variables, then the flags in
// args, and validates the result. It returns the positional arguments, or a *Help or
// Problems error for Exit.
func Parse(spec Spec, cfg any, args []string) ([]string, error) {
	all := fields(cfg)
	var own []field // the keys this command takes flags and variables for
	byKey := map[string]field{}
	for i := range all {
		f := &all[i]
		f.secret = slices.Contains(spec.Secrets, f.key)
		byKey[f.key] = *f
		if (spec.Keys == nil || under(f.key, spec.Keys)) && !under(f.key, spec.Skip) {
			own = append(own, *f)
		}
	}
	sources := map[string]string{}
	var probs Problems

	path, pathSource := configPath(args)
	if path != "" {
		secretFiles := map[string]bool{}
		for _, s := range spec.Secrets {
			secretFiles[s+"_file"] = true
		}
		keys, files, err := decodeFile(path, cfg, secretFiles)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				return nil, Problems{fmt.Sprintf("%s: config: %v", pathSource, err)}
			}
			return nil, Problems(strings.Split(err.Error(), "\n"))
		}
		for _, k := range keys {
			sources[k.path] = fmt.Sprintf("%s:%d", path, k.line)
		}
		for _, s := range spec.Secrets {
			file, ok := files[s+"_file"]
			if !ok {
				continue
			}
			if !slices.ContainsFunc(own, func(f field) bool { return f.key == s }) {
				continue // another command's secret in a shared file: its file need not be here
			}
			if _, both := sources[s]; both {
				probs = append(probs, fmt.Sprintf("%s: %s, %s_file: give one, not both", sources[s+"_file"], s, s))
				continue
			}
			if err := readSecret(byKey[s], file); err != nil {
				probs = append(probs, fmt.Sprintf("%s: %s_file: %v", sources[s+"_file"], s, err))
			}
			sources[s] = sources[s+"_file"]
		}
	}

	for _, f := range own {
		name := EnvName(f.key)
		v, set := os.LookupEnv(name)
		if set {
			if err := f.set(v); err != nil {
				probs = append(probs, fmt.Sprintf("%s: %s: %v", name, f.key, err))
			}
			sources[f.key] = name
		}
		if !f.secret {
			continue
		}
		fileName := EnvName(f.key + "_file")
		if file, ok := os.LookupEnv(fileName); ok {
			if set {
				probs = append(probs, fmt.Sprintf("%s, %s: give one, not both", name, fileName))
			} else if err := readSecret(f, file); err != nil {
				probs = append(probs, fmt.Sprintf("%s: %s_file: %v", fileName, f.key, err))
			}
			sources[f.key] = fileName
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}

	fs := flag.NewFlagSet(spec.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.String("config", path, "YAML configuration file: any key below, nested by its dots")
	flagKey := map[string]string{}
	for _, f := range own {
		fs.Var(flagValue{f}, FlagName(f.key), help(spec, f.key))
		flagKey[FlagName(f.key)] = f.key
		if f.secret {
			fs.Func(FlagName(f.key+"_file"), "read "+f.key+" from this file", func(file string) error {
				return readSecret(f, file)
			})
			flagKey[FlagName(f.key+"_file")] = f.key
		}
	}
	for _, alias := range slices.Sorted(maps.Keys(spec.Aliases)) {
		key := spec.Aliases[alias]
		if i := slices.IndexFunc(own, func(f field) bool { return f.key == key }); i >= 0 {
			fs.Var(flagValue{own[i]}, alias, "same as --"+FlagName(key))
			flagKey[alias] = key
		}
	}
	if spec.Extra != nil {
		spec.Extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &Help{Text: usage(spec, fs, own)}
		}
		// The flag package names flags with one dash; they are written with two here.
		msg := strings.Replace(err.Error(), "flag provided but not defined: -", "unknown flag --", 1)
		return nil, Problems{strings.Replace(msg, " for flag -", " for flag --", 1)}
	}
	given := map[string][]string{}
	fs.Visit(func(fl *flag.Flag) {
		if key, ok := flagKey[fl.Name]; ok {
			sources[key] = "--" + fl.Name
			given[key] = append(given[key], "--"+fl.Name)
		}
	})
	for _, key := range spec.Secrets {
		if len(given[key]) > 1 {
			probs = append(probs, fmt.Sprintf("%s: give one, not both", strings.Join(given[key], ", ")))
		}
	}
	if spec.Args == "" && fs.NArg() > 0 {
		probs = append(probs, fmt.Sprintf("unexpected argument %q (flags come before arguments)", fs.Arg(0)))
	}
	if len(probs) > 0 {
		return nil, probs
	}
	if spec.Validate != nil {
		if err := spec.Validate(); err != nil {
			return nil, annotate(err, sources, byKey)
		}
	}
	return fs.Args(), nil
}

// under reports whether key is one of keys or in a section one of them names.
func under(key string, keys []string) bool {
	for _, k := range keys {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// readSecret sets f from a file; one trailing line break is not part of the secret.
func readSecret(f field, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return f.set(s)
}

// configPath finds the configuration file: --config in args, else FLEETMETER_CONFIG.
// source names where it was given.
func configPath(args []string) (path, source string) {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--config=", "-config="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				return v, "--config"
			}
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			return args[i+1], "--config"
		}
	}
	return os.Getenv("FLEETMETER_CONFIG"), "FLEETMETER_CONFIG"
}

// annotate turns Validate's errors into problems prefixed with where each key's value
// came from; a key left at its default gets no prefix.
func annotate(err error, sources map[string]string, byKey map[string]field) Problems {
	var out Problems
	for _, e := range leaves(err) {
		msg := e.Error()
		head, _, _ := strings.Cut(msg, ": ")
		src := ""
		for _, key := range strings.Split(head, ", ") {
			if src = source(key, sources, byKey); src != "" {
				break
			}
		}
		if src != "" {
			msg = src + ": " + msg
		}
		out = append(out, msg)
	}
	return out
}

// source is where key's value came from: the key itself, else (http.keys[0].tenant) the
// nearest enclosing element that has a source, up to the configuration key holding it.
func source(key string, sources map[string]string, byKey map[string]field) string {
	for {
		if s, ok := sources[key]; ok {
			return s
		}
		if _, leaf := byKey[key]; leaf {
			return ""
		}
		i := strings.LastIndexAny(key, ".[")
		if i <= 0 {
			return ""
		}
		key = key[:i]
	}
}

// leaves flattens errors.Join trees.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}
