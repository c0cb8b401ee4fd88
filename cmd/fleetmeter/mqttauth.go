package main

import (
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"fleetmeter/ingest/registry"
)

// authHook admits devices by the registry's MQTT credentials and confines each to its
// own usage topics:
//   - CONNECT needs a username the registry lists and the password its
//     mqtt_password_hash was made from; anything else is refused (bad username or
//     password). A reserved client id (the mediator's) is refused whatever the
//     credentials.
//   - The session is bound to the identity: the client id becomes the username (as
//     Mosquitto's use_username_as_clientid), so no device can take over another's
//     session by naming its client id.
//   - A device may publish only to <prefix>/<its tenant>/<its device>/usage[/<format>]
//     and subscribe to nothing. mochi disconnects an MQTT 3.1.1 client whose publication
//     is denied and answers a 5.0 client with "not authorized". The username (the client
//     id) is looked up on every publication, so a device removed from the registry
//     publishes no more on a connection it already had.
//
// Passwords and hashes are never logged; refusals are counted by reason.
type authHook struct {
	mochi.HookBase
	prefix   string
	devices  func(username string) (registry.Device, bool)
	reserved map[string]bool
	m        *brokerMetrics
	log      *slog.Logger
}

func newAuthHook(prefix string, devices func(string) (registry.Device, bool), reserved []string, m *brokerMetrics,
	logger *slog.Logger) *authHook {
	h := &authHook{prefix: prefix, devices: devices, reserved: map[string]bool{}, m: m, log: logger}
	for _, id := range reserved {
		h.reserved[id] = true
	}
	return h
}

func (h *authHook) ID() string { return "fleetmeter-device-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// unknownUser is checked against the password of an unknown username, so a refusal takes
// as long whether or not the username exists.
var unknownUser = func() registry.PasswordHash {
	h, err := registry.HashPassword("unknown user")
	if err != nil {
		panic(err) // the system's random source failed
	}
	return h
}()

func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	d, known := h.devices(user)
	hash := d.MQTTPasswordHash
	if !known || hash == "" {
		hash = unknownUser
	}
	passwordOK := hash.Check(string(pk.Connect.Password))
	reason := ""
	switch {
	case h.reserved[cl.ID] || h.reserved[user]:
		reason = "reserved_client_id"
	case !pk.Connect.UsernameFlag || user == "":
		reason = "anonymous"
	case !known:
		reason = "unknown_user"
	case d.MQTTPasswordHash == "":
		reason = "no_password"
	case !passwordOK:
		reason = "bad_password"
	}
	if reason != "" {
		h.m.refused.WithLabelValues(reason).Inc()
		h.log.Debug("mqtt connection refused", "reason", reason, "username", user, "client_id", cl.ID,
			"remote", cl.Net.Remote)
		return false
	}
	cl.ID = user
	return true
}

func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if write {
		if d, ok := h.devices(cl.ID); ok { // authenticated: cl.ID is the username
			tenant, device, _, ok := usageTopic(h.prefix, topic)
			if ok && tenant == d.Tenant && device == d.Device {
				return true
			}
		}
		h.m.denied.WithLabelValues("publish").Inc()
		return false
	}
	h.m.denied.WithLabelValues("subscribe").Inc()
	return false
}
