// Package registry is the device registry the operator maintains: which devices exist,
// which tenant owns each, and the credentials each authenticates with (a CoAP DTLS PSK,
// an MQTT username). Collectors resolve a transport identity through it; in strict mode
// a device the registry does not name is rejected with reason unknown_device.
//
// A *Registry is an immutable snapshot: lookups need no locks. Live holds the current
// snapshot and swaps it atomically when Watch sees a valid new file; an invalid file is
// refused and the previous snapshot stays.
package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	"fleetmeter/record"
)

// ReasonUnknownDevice is the rejection reason for a device a strict registry does not name.
const ReasonUnknownDevice = "unknown_device"

// Device is one registry entry. Tenant and Device identify it everywhere; the credentials
// are optional.
type Device struct {
	Tenant          string
	Device          string
	CoAPPSKIdentity string // DTLS PSK identity the device presents; empty: no CoAP DTLS
	CoAPPSK         []byte // the pre-shared key of CoAPPSKIdentity
	MQTTUsername    string // empty: no MQTT username bound to the device
	// MQTTPasswordHash authenticates MQTTUsername (empty: the username has no password,
	// so a broker that checks passwords refuses it).
	MQTTPasswordHash PasswordHash
}

// Registry is one loaded registry file.
type Registry struct {
	strict   bool
	file     string
	stamp    string
	devices  []Device
	byKey    map[string]int // tenant "\x00" device
	byPSK    map[string]int
	byMQTT   map[string]int
	problems []error // collected by build; non-empty means invalid

	admOnce sync.Once
	adm     *Admission // built on first use: a snapshot never changes
}

// New builds a registry from entries, validated as Load validates a file (without line
// numbers). It is meant for tests and for embedding callers.
func New(strict bool, devices []Device) (*Registry, error) {
	r := &Registry{strict: strict, file: "(memory)"}
	for i, d := range devices {
		r.add(d, func(key, msg string) error {
			return fmt.Errorf("registry: devices[%d].%s: %s", i, key, msg)
		})
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	r.stamp = "memory"
	return r, nil
}

// Strict reports whether devices the registry does not name are rejected.
func (r *Registry) Strict() bool { return r.strict }

// File is the path the registry was loaded from.
func (r *Registry) File() string { return r.file }

// Stamp identifies the content: the first 8 bytes of its SHA-256, hex.
func (r *Registry) Stamp() string { return r.stamp }

// Len is the number of devices.
func (r *Registry) Len() int { return len(r.devices) }

// Devices returns the entries in file order; the caller must not modify them.
func (r *Registry) Devices() []Device { return r.devices }

// ByPSKIdentity finds the device presenting the DTLS PSK identity id.
func (r *Registry) ByPSKIdentity(id string) (Device, bool) {
	if r == nil {
		return Device{}, false
	}
	i, ok := r.byPSK[id]
	if !ok {
		return Device{}, false
	}
	return r.devices[i], true
}

// ByMQTTUsername finds the device bound to an MQTT username.
func (r *Registry) ByMQTTUsername(u string) (Device, bool) {
	if r == nil {
		return Device{}, false
	}
	i, ok := r.byMQTT[u]
	if !ok {
		return Device{}, false
	}
	return r.devices[i], true
}

// Lookup finds a device by tenant and device id.
func (r *Registry) Lookup(tenant, device string) (Device, bool) {
	if r == nil {
		return Device{}, false
	}
	i, ok := r.byKey[key(tenant, device)]
	if !ok {
		return Device{}, false
	}
	return r.devices[i], true
}

// Admission is the registry's admission index, built on first use.
func (r *Registry) Admission() *Admission {
	r.admOnce.Do(func() { r.adm = NewAdmission(r) })
	return r.adm
}

// Admit applies the admission rule (see Admission): nil when the registry is nil or
// admits the device, else a *record.InvalidError with reason unknown_device or
// wrong_tenant. The message does not name the tenants a device is registered to.
func (r *Registry) Admit(tenant, device string) error {
	if r == nil {
		return nil
	}
	switch reason, _ := r.Admission().Check(tenant, device); reason {
	case "":
		return nil
	case record.ReasonWrongTenant:
		return &record.InvalidError{Reason: reason, Msg: "device " + record.QuoteInput(device) + " is registered to another tenant"}
	default:
		return &record.InvalidError{Reason: reason,
			Msg: "device " + tenant + "/" + device + " is not in the device registry"}
	}
}

func key(tenant, device string) string { return tenant + "\x00" + device }

// add validates d and indexes it; report builds the error for a field.
func (r *Registry) add(d Device, report func(key, msg string) error) {
	bad := func(k, msg string) { r.problems = append(r.problems, report(k, msg)) }
	ok := true
	for _, f := range []struct{ k, v string }{{"tenant", d.Tenant}, {"device", d.Device}} {
		if msg := idProblem(f.v); msg != "" {
			bad(f.k, msg)
			ok = false
		}
	}
	if ok {
		if _, dup := r.byKey[key(d.Tenant, d.Device)]; dup {
			bad("device", fmt.Sprintf("device %s/%s is listed twice", d.Tenant, d.Device))
			ok = false
		}
	}
	switch {
	case d.CoAPPSKIdentity != "" && len(d.CoAPPSK) == 0:
		bad("coap_psk_identity", "needs coap_psk")
		ok = false
	case d.CoAPPSKIdentity == "" && len(d.CoAPPSK) != 0:
		bad("coap_psk", "needs coap_psk_identity")
		ok = false
	}
	if d.CoAPPSKIdentity != "" {
		if len(d.CoAPPSKIdentity) > 128 {
			bad("coap_psk_identity", "longer than 128 bytes")
			ok = false
		} else if _, dup := r.byPSK[d.CoAPPSKIdentity]; dup {
			bad("coap_psk_identity", fmt.Sprintf("identity %q is already used by another device", d.CoAPPSKIdentity))
			ok = false
		}
	}
	if len(d.CoAPPSK) > 64 {
		bad("coap_psk", "longer than 64 bytes")
		ok = false
	}
	if d.MQTTPasswordHash != "" {
		if d.MQTTUsername == "" {
			bad("mqtt_password_hash", "needs mqtt_username")
			ok = false
		} else if err := d.MQTTPasswordHash.Validate(); err != nil {
			bad("mqtt_password_hash", err.Error())
			ok = false
		}
	}
	if d.MQTTUsername != "" {
		if _, dup := r.byMQTT[d.MQTTUsername]; dup {
			bad("mqtt_username", fmt.Sprintf("username %q is already used by another device", d.MQTTUsername))
			ok = false
		}
	}
	if !ok {
		return
	}
	if r.byKey == nil {
		r.byKey, r.byPSK, r.byMQTT = map[string]int{}, map[string]int{}, map[string]int{}
	}
	i := len(r.devices)
	r.devices = append(r.devices, d)
	r.byKey[key(d.Tenant, d.Device)] = i
	if d.CoAPPSKIdentity != "" {
		r.byPSK[d.CoAPPSKIdentity] = i
	}
	if d.MQTTUsername != "" {
		r.byMQTT[d.MQTTUsername] = i
	}
}

func (r *Registry) err() error {
	if len(r.problems) == 0 {
		return nil
	}
	return Errors(r.problems)
}

// idProblem checks a tenant or device id: it appears in CoAP paths, MQTT topics and
// Kafka keys, so it is printable ASCII without separators.
func idProblem(s string) string {
	if s == "" {
		return "required"
	}
	if len(s) > 128 {
		return "longer than 128 bytes"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '+' || c == '#' {
			return fmt.Sprintf("%q: only printable ASCII without spaces, '/', '+' or '#'", s)
		}
	}
	return ""
}

// DecodePSK reads a coap_psk value: "0x" followed by hex digits is hex, anything else is
// the key's literal bytes (as libcoap's coap-client -k takes it).
func DecodePSK(s string) ([]byte, error) {
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("bad hex after 0x: %w", err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("empty hex key")
		}
		return b, nil
	}
	return []byte(s), nil
}

func stampOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Errors lists every problem of one load.
type Errors []error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes the problems to errors.Is and errors.As.
func (es Errors) Unwrap() []error { return es }

// Error is one problem, located in the file.
type Error struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}
