package config

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// BuildInfo is what a binary was built from, read from the Go build information.
type BuildInfo struct {
	Version   string // module version, "(devel)" for a local build
	Revision  string // VCS revision, with " (modified)" when the tree was
	Time      string // commit time
	GoVersion string
}

// Build returns the binary's build information; ok is false when it has none.
func Build() (b BuildInfo, ok bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return BuildInfo{}, false
	}
	b = BuildInfo{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	modified := false
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			b.Revision = kv.Value
		case "vcs.time":
			b.Time = kv.Value
		case "vcs.modified":
			modified = kv.Value == "true"
		}
	}
	if b.Revision != "" && modified {
		b.Revision += " (modified)"
	}
	return b, true
}

// Version is the --version line of a binary: module version, VCS revision (and whether
// the tree was modified), commit time and Go version, from the build information.
func Version(binary string) string {
	b, ok := Build()
	if !ok {
		return binary + " (no build information)\n"
	}
	parts := []string{binary + " " + b.Version}
	if b.Revision != "" {
		parts = append(parts, "revision "+b.Revision)
	}
	if b.Time != "" {
		parts = append(parts, "committed "+b.Time)
	}
	parts = append(parts, b.GoVersion)
	return fmt.Sprintln(strings.Join(parts, ", "))
}

// IsHelp reports whether arg asks for help.
func IsHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// IsVersion reports whether arg asks for the version.
func IsVersion(arg string) bool {
	switch arg {
	case "-version", "--version", "version":
		return true
	}
	return false
}
