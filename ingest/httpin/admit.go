package httpin

import (
	"sync/atomic"

	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// admission is one device registry snapshot as a request consults it: device id -> the
// tenants listing it, built once per snapshot, so admitting a record is one map lookup
// and allocates nothing. The rule is the MQTT collector's: a strict registry refuses a
// device it does not list (unknown_device); any registry refuses a device id it lists
// only under other tenants (wrong_tenant), since a listed id is claimed.
type admission struct {
	reg    *registry.Registry
	strict bool
	owners map[string][]string
}

func newAdmission(r *registry.Registry) *admission {
	a := &admission{reg: r, strict: r.Strict(), owners: make(map[string][]string, r.Len())}
	for _, d := range r.Devices() {
		a.owners[d.Device] = append(a.owners[d.Device], d.Tenant)
	}
	return a
}

// check returns "" when the registry admits (tenant, device), else the reason and a
// message for the client. The message never names the tenant the device belongs to:
// the client is another tenant.
func (a *admission) check(tenant, device string) (reason, msg string) {
	ts, listed := a.owners[device]
	if listed {
		for _, t := range ts {
			if t == tenant {
				return "", ""
			}
		}
		return record.ReasonWrongTenant, "device " + record.QuoteInput(device) + " is registered to another tenant"
	}
	if a.strict {
		return record.ReasonUnknownDevice, "device " + record.QuoteInput(device) + " is not in the device registry"
	}
	return "", ""
}

// admitter caches the admission of the registry snapshot in force.
type admitter struct {
	live *registry.Live // nil: no registry
	cur  atomic.Pointer[admission]
}

// current returns the admission of the snapshot in force (nil: no registry). A request
// takes it once, so all its records see one snapshot.
func (ad *admitter) current() *admission {
	r := ad.live.Load()
	if r == nil {
		return nil
	}
	if a := ad.cur.Load(); a != nil && a.reg == r {
		return a
	}
	a := newAdmission(r)
	ad.cur.Store(a)
	return a
}
