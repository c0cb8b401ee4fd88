package registry

import (
	"reflect"
	"strings"
	"testing"
)

func TestFormatParsesBack(t *testing.T) {
	devices := []Device{
		{Tenant: "acme-auto", Device: "car-0001", CoAPPSKIdentity: "car-0001@acme-auto", CoAPPSK: []byte{0, 1, 0xfe},
			MQTTUsername: "acme.car-0001", MQTTPasswordHash: PasswordHash(mosquittoHash)},
		{Tenant: "greenfield", Device: `meter"17`},
	}
	for _, strict := range []bool{true, false} {
		r, err := Parse("formatted.yaml", Format(strict, devices))
		if err != nil {
			t.Fatalf("%v\n%s", err, Format(strict, devices))
		}
		if r.Strict() != strict || !reflect.DeepEqual(r.Devices(), devices) {
			t.Fatalf("parsed back %+v strict=%v, want %+v", r.Devices(), r.Strict(), devices)
		}
	}
	r, err := Parse("empty.yaml", Format(true, nil))
	if err != nil || r.Len() != 0 || !r.Strict() {
		t.Fatalf("empty: %v %v", r, err)
	}
}

func TestPasswordHashNeedsUsername(t *testing.T) {
	_, err := Parse("r.yaml", []byte("devices:\n  - tenant: t\n    device: d\n    mqtt_password_hash: \""+mosquittoHash+"\"\n"+
		"  - tenant: t\n    device: e\n    mqtt_username: e\n    mqtt_password_hash: plain-text\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"r.yaml:4: devices[0].mqtt_password_hash: needs mqtt_username",
		"r.yaml:8: devices[1].mqtt_password_hash: not a $7$"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
