package mqtt

import (
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// ReasonWrongTenant: the topic names a device id the registry lists, but only under
// other tenants (see registry.Admission). The code is record's, like every other reason
// this collector emits.
const ReasonWrongTenant = record.ReasonWrongTenant

// admit applies the registry's admission rule to a message's (tenant, device): "" when
// admitted, else the reason and the detail for topic rejected, which operators read (so
// it names the tenants the device is registered to).
func admit(a *registry.Admission, tenant, device string) (reason, detail string) {
	reason, owners := a.Check(tenant, device)
	switch reason {
	case "":
		return "", ""
	case record.ReasonWrongTenant:
		return reason, "device " + device + " is registered to tenant " + owners + ", not " + tenant
	}
	return reason, "device " + tenant + "/" + device + " is not in the device registry"
}
