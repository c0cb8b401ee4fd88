package main

import (
	"os"
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
	const path = "../../docs/configuration.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := config.ReferenceSection(string(doc), "mediator run", config.Reference(spec, &cfg))
	if !ok {
		t.Fatalf("%s lacks the markers of section mediator run", path)
	}
	if got == string(doc) {
		return
	}
	if os.Getenv("FLEETMETER_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is stale: FLEETMETER_UPDATE_DOCS=1 go test ./cmd/mediator -run TestConfigurationReference", path)
}
