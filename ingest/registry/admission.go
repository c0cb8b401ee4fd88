package registry

import (
	"strings"

	"fleetmeter/record"
)

// Admission is the rule every collector applies to a (tenant, device) it is about to
// bill, on one registry snapshot: a strict registry refuses a device it does not list
// (unknown_device); any registry refuses a device id it lists only under other tenants
// (wrong_tenant), since a listed id is claimed, so a tenant whose own, unlisted device
// shares the id must list it too. The index (device id -> the tenants listing it) is built
// once per snapshot, so a check is one map lookup and allocates nothing.
type Admission struct {
	reg    *Registry
	strict bool
	byID   map[string]owners
}

// owners lists the tenants of one device id; nearly always one.
type owners struct {
	first string
	more  []string
}

func (o owners) has(t string) bool {
	if o.first == t {
		return true
	}
	for _, m := range o.more {
		if m == t {
			return true
		}
	}
	return false
}

func (o owners) String() string {
	if len(o.more) == 0 {
		return o.first
	}
	return o.first + ", " + strings.Join(o.more, ", ")
}

// NewAdmission indexes r.
func NewAdmission(r *Registry) *Admission {
	a := &Admission{reg: r, strict: r.Strict(), byID: make(map[string]owners, r.Len())}
	for _, d := range r.Devices() {
		o, ok := a.byID[d.Device]
		if !ok {
			o.first = d.Tenant
		} else {
			o.more = append(o.more, d.Tenant)
		}
		a.byID[d.Device] = o
	}
	return a
}

// Check returns "" when the registry admits (tenant, device); else the reason code and,
// for wrong_tenant, the tenants the device id is registered to. Whether to show those
// to the sender is the caller's choice (an HTTP client is another tenant: it must not).
func (a *Admission) Check(tenant, device string) (reason, registeredTo string) {
	o, listed := a.byID[device]
	switch {
	case listed && o.has(tenant):
		return "", ""
	case listed:
		return record.ReasonWrongTenant, o.String()
	case a.strict:
		return record.ReasonUnknownDevice, ""
	}
	return "", ""
}

// Registry is the snapshot a was built from.
func (a *Admission) Registry() *Registry { return a.reg }

// Admitter follows the registry snapshot in force (a Live) for a collector.
type Admitter struct {
	live *Live // nil: no registry
}

// SetLive makes ad follow live (nil: no registry, every device admitted).
func (ad *Admitter) SetLive(live *Live) { ad.live = live }

// Live is the registry followed (nil: none).
func (ad *Admitter) Live() *Live { return ad.live }

// Prepare builds r's admission index now: a collector that watches the registry itself
// calls it on reload, so the next record does not pay for the index.
func (ad *Admitter) Prepare(r *Registry) *Admission { return r.Admission() }

// Current returns the Admission of the snapshot in force (nil: no registry). A caller
// takes it once per message or request, so all its records see one snapshot.
func (ad *Admitter) Current() *Admission {
	if ad == nil || ad.live == nil {
		return nil
	}
	r := ad.live.Load()
	if r == nil {
		return nil
	}
	return r.Admission()
}
