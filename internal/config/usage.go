package config

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// usage is the --help text: the usage line, the summary, and every flag with its
// current value (defaults, then the file and the environment) and its variable.
func usage(spec Spec, fs *flag.FlagSet, own []field) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s [flags]", spec.Name)
	if spec.Args != "" {
		fmt.Fprintf(&b, " %s", spec.Args)
	}
	b.WriteString("\n")
	if spec.Summary != "" {
		fmt.Fprintf(&b, "\n%s\n", spec.Summary)
	}
	example := "log_level"
	if len(own) > 0 {
		example = own[0].key
	}
	fmt.Fprintf(&b, "\nEvery key of the --config file (YAML, strict) is also a flag and an environment\n"+
		"variable: key %s is --%s and %s.\nFlags override the environment, "+
		"which overrides the file. Secrets have a _file\nvariant that reads them from a file.\n\nflags:\n",
		example, FlagName(example), EnvName(example))
	byFlag := map[string]field{}
	for _, f := range own {
		byFlag[FlagName(f.key)] = f
		for alias, key := range spec.Aliases {
			if key == f.key {
				byFlag[alias] = f
			}
		}
	}
	fs.VisitAll(func(fl *flag.Flag) {
		f, isKey := byFlag[fl.Name]
		placeholder := "value"
		switch {
		case isKey:
			placeholder = f.typeName()
		case fl.Name == "config" || strings.HasSuffix(fl.Name, "-file"):
			placeholder = "FILE"
		}
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			fmt.Fprintf(&b, "  --%s\n", fl.Name)
		} else {
			fmt.Fprintf(&b, "  --%s %s\n", fl.Name, placeholder)
		}
		var notes []string
		if v := fl.Value.String(); v != "" && v != "0" && v != "false" && v != "0s" && !(isKey && f.secret) {
			notes = append(notes, fmt.Sprintf("default %q", v))
		}
		if isKey {
			notes = append(notes, "env "+EnvName(f.key))
		} else if fl.Name == "config" || strings.HasSuffix(fl.Name, "-file") {
			notes = append(notes, "env "+EnvName(fl.Name))
		}
		text := fl.Usage
		if len(notes) > 0 {
			text = strings.TrimSpace(text + " (" + strings.Join(notes, "; ") + ")")
		}
		if text != "" {
			fmt.Fprintf(&b, "      %s\n", text)
		}
	})
	return b.String()
}

// Reference is the Markdown table of a command's keys: key, default, environment
// variable, flag and what it does. cfg holds the defaults.
func Reference(spec Spec, cfg any) string {
	var b strings.Builder
	b.WriteString("| key | default | environment | flag | what it does |\n|---|---|---|---|---|\n")
	for _, f := range fields(cfg) {
		f.secret = slices.Contains(spec.Secrets, f.key)
		if spec.Keys != nil && !under(f.key, spec.Keys) || under(f.key, spec.Skip) {
			continue
		}
		def := f.String()
		if def != "" {
			def = "`" + def + "`"
		}
		flags := "`--" + FlagName(f.key) + "`"
		for _, alias := range slices.Sorted(maps.Keys(spec.Aliases)) {
			if spec.Aliases[alias] == f.key {
				flags += ", `--" + alias + "`"
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s |\n", f.key, def, EnvName(f.key), flags,
			mdEscape.Replace(help(spec, f.key)))
		if f.secret {
			fmt.Fprintf(&b, "| `%s_file` | | `%s` | `--%s` | file holding %s (one trailing line break ignored) |\n",
				f.key, EnvName(f.key+"_file"), FlagName(f.key+"_file"), f.key)
		}
	}
	return b.String()
}

var mdEscape = strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;")

// CheckSpec reports the keys a Spec names that cfg does not have (a typo in Help,
// Secrets, Keys or Skip would silently do nothing). For tests.
func CheckSpec(spec Spec, cfg any) error {
	known := map[string]bool{}
	for _, f := range fields(cfg) {
		for k := f.key; ; {
			known[k] = true
			i := strings.LastIndex(k, ".")
			if i < 0 {
				break
			}
			k = k[:i]
		}
	}
	var bad []string
	for _, list := range [][]string{spec.Keys, spec.Skip, spec.Secrets, slices.Collect(maps.Keys(spec.Help)),
		slices.Collect(maps.Values(spec.Aliases))} {
		for _, k := range list {
			if !known[k] {
				bad = append(bad, k)
			}
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%s: no such keys: %s", spec.Name, strings.Join(bad, ", "))
	}
	return nil
}

// ReferenceSection replaces the text between the markers
// "<!-- begin NAME -->" and "<!-- end NAME -->" in doc with body; ok is false when
// doc lacks them.
func ReferenceSection(doc, name, body string) (string, bool) {
	begin, end := "<!-- begin "+name+" -->\n", "<!-- end "+name+" -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return doc, false
	}
	return doc[:i+len(begin)] + body + doc[j:], true
}

// SyncReference keeps section name of the Markdown file at path equal to body, for the
// tests that keep the configuration reference current: with FLEETMETER_UPDATE_DOCS=1 it
// rewrites the file, else a stale section is an error.
func SyncReference(path, name, body string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	got, ok := ReferenceSection(string(doc), name, body)
	switch {
	case !ok:
		return fmt.Errorf("%s lacks the markers of section %s", path, name)
	case got == string(doc):
		return nil
	case os.Getenv("FLEETMETER_UPDATE_DOCS") == "1":
		return os.WriteFile(path, []byte(got), 0o644)
	}
	return fmt.Errorf("%s: section %s is stale: run this test again with FLEETMETER_UPDATE_DOCS=1", path, name)
}
