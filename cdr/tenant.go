package cdr

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// TenantMap assigns a CDR's usage to a tenant. Rules are tried in order and the first
// whose every set criterion matches wins; Default applies when none does. An empty
// tenant is left for the pipeline to reject (record.Usage.Validate), never guessed.
type TenantMap struct {
	Default string       `yaml:"default"`
	Rules   []TenantRule `yaml:"rules"`
}

// TenantRule matches the CDR's SUPI, DNN and slice. Unset criteria match anything; at
// least one must be set.
type TenantRule struct {
	Tenant string `yaml:"tenant"`
	// SUPIPrefix matches the device (the SUPI as emitted, e.g. "imsi-20893000").
	SUPIPrefix string `yaml:"supi_prefix"`
	// SUPIRange is an inclusive [first, last] range of SUPIs of equal length, e.g.
	// ["imsi-208930000000001", "imsi-208930000000499"]; SUPIs of another length
	// never match.
	SUPIRange []string `yaml:"supi_range"`
	// DNN matches the data network name, case-insensitively.
	DNN string `yaml:"dnn"`
	// SliceSST and SliceSD match the S-NSSAI; SliceSD is hex, case-insensitive.
	SliceSST *uint8 `yaml:"slice_sst"`
	SliceSD  string `yaml:"slice_sd"`
}

// Validate names every broken rule by its key.
func (m *TenantMap) Validate() error {
	var errs []error
	for i, r := range m.Rules {
		key := fmt.Sprintf("tenants.rules[%d]", i)
		if r.Tenant == "" {
			errs = append(errs, fmt.Errorf("%s.tenant: must be set", key))
		}
		if r.SUPIPrefix == "" && len(r.SUPIRange) == 0 && r.DNN == "" && r.SliceSST == nil && r.SliceSD == "" {
			errs = append(errs, fmt.Errorf("%s: needs at least one of supi_prefix, supi_range, dnn, slice_sst, slice_sd", key))
		}
		if len(r.SUPIRange) != 0 {
			switch {
			case len(r.SUPIRange) != 2:
				errs = append(errs, fmt.Errorf("%s.supi_range: want [first, last], got %d values", key, len(r.SUPIRange)))
			case len(r.SUPIRange[0]) != len(r.SUPIRange[1]):
				errs = append(errs, fmt.Errorf("%s.supi_range: %q and %q differ in length", key, r.SUPIRange[0], r.SUPIRange[1]))
			case r.SUPIRange[0] > r.SUPIRange[1]:
				errs = append(errs, fmt.Errorf("%s.supi_range: first %q is after last %q", key, r.SUPIRange[0], r.SUPIRange[1]))
			}
		}
		if r.SliceSD != "" && !isHex([]byte(r.SliceSD), 1, 64) {
			errs = append(errs, fmt.Errorf("%s.slice_sd: %q is not hex", key, r.SliceSD))
		}
	}
	return errors.Join(errs...)
}

// Lookup returns the tenant for a device (SUPI), DNN and slice.
func (m *TenantMap) Lookup(device, dnn string, sst uint8, hasSlice bool, sd string) string {
	c := compileTenants(m)
	return c.lookup([]byte(device), []byte(dnn), sst, hasSlice, sd)
}

// tenantRules is a TenantMap prepared for matching bytes without allocating.
type tenantRules struct {
	def   string
	rules []tenantRule
}

type tenantRule struct {
	tenant   string
	prefix   []byte
	lo, hi   []byte
	dnn      []byte
	sst      uint8
	matchSST bool
	sd       string // lowercase
}

func compileTenants(m *TenantMap) tenantRules {
	c := tenantRules{def: m.Default}
	for _, r := range m.Rules {
		cr := tenantRule{tenant: r.Tenant, prefix: []byte(r.SUPIPrefix), dnn: []byte(r.DNN), sd: strings.ToLower(r.SliceSD)}
		if len(r.SUPIRange) == 2 {
			cr.lo, cr.hi = []byte(r.SUPIRange[0]), []byte(r.SUPIRange[1])
		}
		if r.SliceSST != nil {
			cr.sst, cr.matchSST = *r.SliceSST, true
		}
		c.rules = append(c.rules, cr)
	}
	return c
}

func (c *tenantRules) lookup(device, dnn []byte, sst uint8, hasSlice bool, sd string) string {
	for i := range c.rules {
		r := &c.rules[i]
		if len(r.prefix) > 0 && !bytes.HasPrefix(device, r.prefix) {
			continue
		}
		if r.lo != nil && (len(device) != len(r.lo) || bytes.Compare(device, r.lo) < 0 || bytes.Compare(device, r.hi) > 0) {
			continue
		}
		if len(r.dnn) > 0 && !bytes.EqualFold(dnn, r.dnn) {
			continue
		}
		if r.matchSST && (!hasSlice || sst != r.sst) {
			continue
		}
		if r.sd != "" && sd != r.sd {
			continue
		}
		return r.tenant
	}
	return c.def
}
