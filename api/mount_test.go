package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"fleetmeter/api"
)

// TestMountSharesAuth: a handler mounted with one line sees the caller's principal and
// is never reached without a valid key.
func TestMountSharesAuth(t *testing.T) {
	s := api.New(nil, "db", testKeys(t), limits(), nil, nil, nil)
	s.Mount("/v1/billing/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := api.TenantFrom(r.Context())
		tenant, err := api.ResolveTenant(r)
		if !ok || err != nil {
			http.Error(w, "no principal", 500)
			return
		}
		_, _ = w.Write([]byte(p.Name + " " + tenant))
	}))
	ts := httptest.NewServer(s)
	defer ts.Close()
	if code, body := get(t, ts, keyA, "/v1/billing/export"); code != 200 || body != "a ta" {
		t.Errorf("tenant key: %d %q", code, body)
	}
	if code, body := get(t, ts, keyOp, "/v1/billing/export?tenant=tb"); code != 200 || body != "op tb" {
		t.Errorf("operator key: %d %q", code, body)
	}
	if code, body := get(t, ts, "bad", "/v1/billing/export"); code != 401 || !strings.Contains(body, "missing or unknown API key") {
		t.Errorf("bad key: %d %q", code, body)
	}
}

// TestKeysConfig: bad entries are refused with the key's position and field, and a key
// matches only its own hash.
func TestKeysConfig(t *testing.T) {
	_, err := api.NewKeys([]api.KeyConfig{{Tenant: "ta", SHA256: "abc"}, {SHA256: api.HashKey("x")},
		{Tenant: "ta", Operator: true, SHA256: api.HashKey("y")}})
	for _, w := range []string{"keys[0].sha256: want 64 hex digits", "keys[1].tenant: required", "keys[2]: an operator key has no tenant"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("want %q in %v", w, err)
		}
	}
	k := testKeys(t)
	if p, ok := k.Lookup(keyB); !ok || p.Tenant != "tb" {
		t.Errorf("lookup keyB: %+v %v", p, ok)
	}
	if _, ok := k.Lookup(api.HashKey(keyA)); ok {
		t.Error("the stored hash itself must not work as a key")
	}
}

// TestDemoKeys: one working, distinct key per tenant, only hashes configured.
func TestDemoKeys(t *testing.T) {
	cfgs, plain, err := api.DemoKeys([]string{"agrico", "autoco"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := api.NewKeys(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	for ten, key := range plain {
		if p, ok := k.Lookup(key); !ok || p.Tenant != ten {
			t.Errorf("%s: %+v %v", ten, p, ok)
		}
		for _, c := range cfgs {
			if strings.Contains(c.SHA256, key) || strings.Contains(c.Name, key) {
				t.Errorf("config holds the key itself")
			}
		}
	}
	if plain["agrico"] == plain["autoco"] {
		t.Error("keys repeat")
	}
}
