package mqtt

import (
	"strings"
	"sync/atomic"

	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// ReasonWrongTenant: the topic names a device id the registry lists, but only under
// other tenants. Kept in strict and non-strict mode alike: a listed device id is claimed,
// so a tenant whose own, unlisted device shares the id must list it too. The code is
// record's, like every other reason this collector emits.
const ReasonWrongTenant = record.ReasonWrongTenant

// admission is the per-message view of one registry snapshot: device id -> the tenants
// listing it. One map lookup on substrings of the topic, so admitting a message
// allocates nothing (registry.Lookup builds a tenant+device key, which allocates for
// longer ids). It is built once per snapshot and cached by the collector.
type admission struct {
	reg    *registry.Registry
	strict bool
	byID   map[string]tenants
}

// tenants lists the tenants of one device id; nearly always one.
type tenants struct {
	first string
	more  []string
}

func (ts tenants) has(t string) bool {
	if ts.first == t {
		return true
	}
	for _, m := range ts.more {
		if m == t {
			return true
		}
	}
	return false
}

func (ts tenants) String() string {
	if len(ts.more) == 0 {
		return ts.first
	}
	return ts.first + ", " + strings.Join(ts.more, ", ")
}

func newAdmission(r *registry.Registry) *admission {
	a := &admission{reg: r, strict: r.Strict(), byID: make(map[string]tenants, r.Len())}
	for _, d := range r.Devices() {
		ts, ok := a.byID[d.Device]
		if !ok {
			ts.first = d.Tenant
		} else {
			ts.more = append(ts.more, d.Tenant)
		}
		a.byID[d.Device] = ts
	}
	return a
}

// check returns "" when the registry admits (tenant, device), else the rejection reason
// and a detail.
func (a *admission) check(tenant, device string) (reason, detail string) {
	ts, listed := a.byID[device]
	switch {
	case listed && ts.has(tenant):
		return "", ""
	case listed:
		return ReasonWrongTenant, "device " + device + " is registered to tenant " + ts.String() + ", not " + tenant
	case a.strict:
		return record.ReasonUnknownDevice, "device " + tenant + "/" + device + " is not in the device registry"
	}
	return "", ""
}

// admitter caches the admission of the registry snapshot in force.
type admitter struct {
	live *registry.Live // nil: no registry
	cur  atomic.Pointer[admission]
}

// current returns the admission for the snapshot live holds now (nil: no registry),
// building it on the first message after a reload the collector did not watch itself.
func (ad *admitter) current() *admission {
	r := ad.live.Load()
	if r == nil {
		return nil
	}
	if a := ad.cur.Load(); a != nil && a.reg == r {
		return a
	}
	return ad.prepare(r)
}

// prepare builds and caches the admission of r.
func (ad *admitter) prepare(r *registry.Registry) *admission {
	a := newAdmission(r)
	ad.cur.Store(a)
	return a
}
