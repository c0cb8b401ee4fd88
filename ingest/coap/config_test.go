package coap

import (
	"os"
	"testing"

	"github.com/goccy/go-yaml"

	"fleetmeter/ingest/registry"
)

// The sample config decodes strictly and validates; its registry example loads.
func TestSampleConfig(t *testing.T) {
	data, err := os.ReadFile("sample.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := struct {
		CoAP Config `yaml:"coap"`
	}{CoAP: DefaultConfig()}
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
		t.Fatal(yaml.FormatError(err, false, true))
	}
	want := DefaultConfig()
	want.Enabled, want.DTLSListen, want.RegistryFile = true, "0.0.0.0:5684", "/etc/fleetmeter/devices.yaml"
	if doc.CoAP != want {
		t.Fatalf("sample differs from the defaults it claims:\n got %+v\nwant %+v", doc.CoAP, want)
	}
	if err := doc.CoAP.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Load("testdata/devices.yaml"); err != nil {
		t.Fatal(err)
	}
}
