package httpin

import (
	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// admit applies the registry's admission rule (registry.Admission, as every collector
// does) to a record's (tenant, device): "" when admitted, else the reason and a message
// for the client. The message never names the tenant the device belongs to: the client
// is another tenant.
func admit(a *registry.Admission, tenant, device string) (reason, msg string) {
	reason, _ = a.Check(tenant, device)
	switch reason {
	case "":
		return "", ""
	case record.ReasonWrongTenant:
		return reason, "device " + record.QuoteInput(device) + " is registered to another tenant"
	}
	return reason, "device " + record.QuoteInput(device) + " is not in the device registry"
}
