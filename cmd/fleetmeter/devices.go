package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"

	"fleetmeter/ingest/registry"
	"fleetmeter/sim"
)

// deviceDirectory finds the device an MQTT username belongs to: in the operator's
// registry first (--registry, reloaded when the file changes), then among the simulated
// fleet's.
type deviceDirectory struct {
	operator  *registry.Live     // nil: no --registry
	simulated *registry.Registry // nil: no --simulate
}

func (d *deviceDirectory) byUsername(u string) (registry.Device, bool) {
	if dev, ok := d.operator.Load().ByMQTTUsername(u); ok {
		return dev, true
	}
	return d.simulated.ByMQTTUsername(u)
}

// fleetCredentials are the simulated fleet's MQTT credentials: username <tenant>.<device>,
// password derived from a key drawn once per process. The simulator runs in the same
// process, so the passwords are never written anywhere; the registry the broker checks
// holds their hashes.
type fleetCredentials struct{ key [32]byte }

func newFleetCredentials() (*fleetCredentials, error) {
	f := &fleetCredentials{}
	if _, err := rand.Read(f.key[:]); err != nil {
		return nil, fmt.Errorf("simulated fleet credentials: %w", err)
	}
	return f, nil
}

// of returns device d's username and password.
func (f *fleetCredentials) of(d sim.Device) (username, password string) {
	mac := hmac.New(sha256.New, f.key[:])
	mac.Write([]byte(d.Tenant + "/" + d.ID))
	return d.Tenant + "." + d.ID, base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// provision builds the registry of fleet's devices with their password hashes and writes
// it to path (0600, replaced on every start) for the operator to see who may connect.
func (f *fleetCredentials) provision(fleet *sim.Fleet, path string) (*registry.Registry, error) {
	devices := make([]registry.Device, len(fleet.Devices))
	for i, d := range fleet.Devices {
		user, pw := f.of(d)
		h, err := registry.HashPassword(pw)
		if err != nil {
			return nil, err
		}
		devices[i] = registry.Device{Tenant: d.Tenant, Device: d.ID, MQTTUsername: user, MQTTPasswordHash: h}
	}
	r, err := registry.New(true, devices)
	if err != nil {
		return nil, fmt.Errorf("simulated fleet registry: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append([]byte("# The simulated fleet, written by fleetmeter standalone on every start.\n"),
		registry.Format(true, devices)...), 0o600); err != nil {
		return nil, err
	}
	return r, os.Rename(tmp, path)
}
