package main

import (
	"testing"

	"fleetmeter/internal/config"
)

// docs/configuration.md's mediator section is generated from mediatorConfig; with
// FLEETMETER_UPDATE_DOCS=1 this test rewrites it, else it fails when it is stale.
func TestConfigurationReference(t *testing.T) {
	cfg := defaultMediator()
	spec := mediatorSpec(&cfg)
	if err := config.CheckSpec(spec, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := config.SyncReference("../../docs/configuration.md", spec.Name, config.Reference(spec, &cfg)); err != nil {
		t.Fatal(err)
	}
}
