package rater

import (
	"github.com/prometheus/client_golang/prometheus"

	"fleetmeter/record"
	"fleetmeter/rules"
)

// MaxTenantLabels bounds the tenant label of the per-tenant metrics: the first tenants
// rated get their own series, any further one is counted as tenant "other". Tenants are
// configured (a tariff names them), so a deployment stays under it; the bound only keeps
// a mistake from multiplying series.
const MaxTenantLabels = 100

// tenantOther is the tenant label past MaxTenantLabels.
const tenantOther = "other"

// tenantSums adds up one batch's rated records per tenant and currency. A batch holds a
// few tenants and a device's records arrive together, so a scan with the last match
// first beats a map.
type tenantSums struct {
	keys    []tenantCurrency
	records []uint64
	micros  []int64
	last    int
}

type tenantCurrency struct{ tenant, currency string }

func (s *tenantSums) reset() {
	s.keys, s.records, s.micros, s.last = s.keys[:0], s.records[:0], s.micros[:0], 0
}

func (s *tenantSums) add(r *record.Rated) {
	i := s.last
	if i >= len(s.keys) || s.keys[i].tenant != r.Tenant || s.keys[i].currency != r.Currency {
		i = 0
		for i < len(s.keys) && (s.keys[i].tenant != r.Tenant || s.keys[i].currency != r.Currency) {
			i++
		}
		if i == len(s.keys) {
			s.keys = append(s.keys, tenantCurrency{r.Tenant, r.Currency})
			s.records = append(s.records, 0)
			s.micros = append(s.micros, 0)
		}
		s.last = i
	}
	s.records[i]++
	s.micros[i] += int64(r.Amount)
}

// tenantMetrics are the per-tenant counters with their bounded label.
type tenantMetrics struct {
	records *prometheus.CounterVec
	amount  *prometheus.CounterVec
	known   map[string]bool
}

func newTenantMetrics() *tenantMetrics {
	return &tenantMetrics{known: map[string]bool{},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_tenant_records_total",
			Help: "Rated records committed, by tenant (tenant \"other\" past the first 100 tenants)."}, []string{"tenant"}),
		amount: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetmeter_rater_tenant_amount_total",
			Help: "Amount of the rated records committed, in units of the currency, by tenant (as records_total) and currency; provisional until the period closes."},
			[]string{"tenant", "currency"}),
	}
}

// label is tenant's label value: itself while the bound allows, else "other".
func (m *tenantMetrics) label(tenant string) string {
	if m.known[tenant] {
		return tenant
	}
	if len(m.known) >= MaxTenantLabels {
		return tenantOther
	}
	m.known[tenant] = true
	return tenant
}

// show makes the series of the tenants the tariffs name exist from the start, at 0.
func (m *tenantMetrics) show(set *rules.Set) {
	if set == nil {
		return
	}
	for _, t := range set.Tariffs {
		for _, ten := range t.Tenants {
			l := m.label(ten)
			m.records.WithLabelValues(l)
			m.amount.WithLabelValues(l, t.Currency)
		}
	}
}

// add counts a committed batch's sums.
func (m *tenantMetrics) add(s *tenantSums) {
	for i, k := range s.keys {
		t := m.label(k.tenant)
		m.records.WithLabelValues(t).Add(float64(s.records[i]))
		if s.micros[i] > 0 {
			m.amount.WithLabelValues(t, k.currency).Add(float64(s.micros[i]) / 1e6)
		}
	}
}
