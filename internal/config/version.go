package config

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version is the --version line of a binary: module version, VCS revision (and whether
// the tree was modified), commit time and Go version, from the build information.
func Version(binary string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return binary + " (no build information)\n"
	}
	parts := []string{binary + " " + bi.Main.Version}
	s := map[string]string{}
	for _, kv := range bi.Settings {
		s[kv.Key] = kv.Value
	}
	if rev := s["vcs.revision"]; rev != "" {
		if s["vcs.modified"] == "true" {
			rev += " (modified)"
		}
		parts = append(parts, "revision "+rev)
	}
	if t := s["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	parts = append(parts, bi.GoVersion)
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
