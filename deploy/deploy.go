// Package deploy carries the files an installation starts from, embedded so the
// standalone pipeline runs without a checkout: the example tariffs for the simulated
// tenants.
package deploy

import "embed"

// Tariffs holds tariffs/*.yaml.
//
//go:embed tariffs/*.yaml
var Tariffs embed.FS
