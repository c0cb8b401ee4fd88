package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fleetmeter/ingest/registry"
	"fleetmeter/sim"
)

// The simulated fleet's registry lets each device in with its own password only, and
// the file written for the operator holds no password.
func TestFleetCredentials(t *testing.T) {
	fleet := sim.NewFleet(6, 1)
	creds, err := newFleetCredentials()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "simulated-devices.yaml")
	r, err := creds.provision(fleet, path)
	if err != nil {
		t.Fatal(err)
	}
	written, err := registry.Load(path)
	if err != nil || written.Len() != 6 {
		t.Fatalf("written registry: %v", err)
	}
	file, _ := os.ReadFile(path)
	dir := &deviceDirectory{simulated: r}
	for i, d := range fleet.Devices {
		user, pw := creds.of(d)
		if strings.Contains(string(file), pw) {
			t.Fatalf("%s's password is in %s", user, path)
		}
		got, ok := dir.byUsername(user)
		if !ok || got.Tenant != d.Tenant || got.Device != d.ID || !got.MQTTPasswordHash.Check(pw) {
			t.Fatalf("%s: %+v %v", user, got, ok)
		}
		_, other := creds.of(fleet.Devices[(i+1)%len(fleet.Devices)])
		if got.MQTTPasswordHash.Check(other) {
			t.Fatalf("%s accepts another device's password", user)
		}
	}
}
