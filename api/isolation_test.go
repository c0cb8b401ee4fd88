package api_test

import (
	"encoding/base64"
	"strings"
	"testing"
)

// TestTenantIsolation asks every endpoint, with tenant ta's key, everything that could
// reach tenant tb's data: tb's device ids (one shared with ta), zone, amounts and
// tenant name in filters, group-bys, paths, cursors and the tenant parameter. Each answer
// (status and body, JSON and CSV) must be byte-identical to the answer of a server whose
// database holds no tb data at all, and must not mention tb. So tb's data can be neither
// returned, counted nor revealed, not even by an error message or a 404 that differs
// (the API has no 403: a device the key cannot see is the same 404 as one that does not
// exist, from the same query).
func TestTenantIsolation(t *testing.T) { bothModes(t, testTenantIsolation) }

func testTenantIsolation(t *testing.T, final bool) {
	both := newServerMode(t, final, limits(), fixtureA(), fixtureB())
	onlyA := newServerMode(t, final, limits(), fixtureA())
	rng := "from=2026-10-01&to=2026-11-01"
	cur := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := []string{
		"/",
		"/web/app.js",
		"/openapi.yaml",
		"/v1/whoami",
		"/v1/whoami?tenant=tb",
		"/v1/usage?" + rng,
		"/v1/usage?" + rng + "&window=hour&group_by=device,zone,mobility,source,rat,slice,tariff,offer,charge,currency",
		"/v1/usage?" + rng + "&group_by=device&filter[device]=d1",
		"/v1/usage?" + rng + "&group_by=device&filter[device]=bsecretdev",
		"/v1/usage?" + rng + "&group_by=zone&filter[zone]=bsecretzone",
		"/v1/usage?" + rng + "&filter[mobility]=nomadic",
		"/v1/usage?" + rng + "&filter[tariff]=t-tb",
		"/v1/usage?" + rng + "&filter[device]=d1'%20OR%20tenant%3D'tb",
		"/v1/usage?" + rng + "&group_by=tenant",
		"/v1/usage?" + rng + "&filter[tenant]=tb",
		"/v1/usage?" + rng + "&tenant=tb",
		"/v1/usage?from=2026-10-01&to=2026-10-01T05:00:00Z&window=hour&group_by=device",
		"/v1/devices?" + rng,
		"/v1/devices?" + rng + "&limit=1",
		"/v1/devices?" + rng + "&cursor=" + cur("bsecretdev"),
		"/v1/devices?" + rng + "&cursor=" + cur("a"),
		"/v1/devices?" + rng + "&tenant=tb",
		"/v1/devices/top?" + rng + "&limit=1000",
		"/v1/devices/active?" + rng,
		"/v1/devices/active?" + rng + "&window=day",
		"/v1/devices/d1/timeline?" + rng,
		"/v1/devices/d1/timeline?" + rng + "&limit=2&cursor=" + cur("1759276800000:b-00"),
		"/v1/devices/bsecretdev/timeline?" + rng,
		"/v1/devices/bsecretdev/timeline?" + rng + "&tenant=tb",
		"/v1/devices/nosuchdevice/timeline?" + rng,
		"/v1/periods?" + rng,
		"/v1/periods?" + rng + "&tenant=tb",
		"/v1/nosuchroute",
	}
	for _, p := range cases {
		for _, accept := range []string{"application/json", "text/csv"} {
			c1, b1 := get(t, both, keyA, p, accept)
			c2, b2 := get(t, onlyA, keyA, p, accept)
			if c1 != c2 || b1 != b2 {
				t.Errorf("%s (%s): tenant tb's data changes tenant ta's answer:\nwith tb:    %d %s\nwithout tb: %d %s", p, accept, c1, b1, c2, b2)
			}
			if strings.HasPrefix(p, "/v1/") {
				for _, leak := range []string{"bsecret", "7.777777", "b-0", "b-1", `"tb"`, "t-tb"} {
					if strings.Contains(b1, leak) && !strings.Contains(p, leak) {
						t.Errorf("%s: answer mentions %q: %s", p, leak, b1)
					}
				}
			}
		}
	}
	// A device of tb and a device nobody has get the very same answer.
	c1, b1 := get(t, both, keyA, "/v1/devices/bsecretdev/timeline?"+rng)
	c2, b2 := get(t, both, keyA, "/v1/devices/nosuchdevice/timeline?"+rng)
	if c1 != 404 || c1 != c2 || b1 != b2 {
		t.Errorf("404s differ: %d %s vs %d %s", c1, b1, c2, b2)
	}
	// And tb's own key does see its data (the fixture is not empty).
	if _, b := get(t, both, keyB, "/v1/devices/bsecretdev/timeline?"+rng); !strings.Contains(b, "b-01") {
		t.Errorf("tb cannot see its own device: %s", b)
	}
}
