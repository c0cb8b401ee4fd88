package registry

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// mosquittoHash was written by mosquitto_passwd 2.0.11 (-b pw acme-car-0001 secret-car-0001).
const mosquittoHash = "$7$101$WkrRT45e+vdDi+dy$drdzUuIZ9xtQx0XXIS/Ysa6VNvTie4Q3S7yJ3Zc3UPNAqKUecslLLNoRa8v68GVOb+q7pDeyw25zoQA/h3M8Vg=="

func TestPasswordHashReadsMosquittos(t *testing.T) {
	h := PasswordHash(mosquittoHash)
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if !h.Check("secret-car-0001") {
		t.Fatal("mosquitto_passwd's hash does not match its password")
	}
	for _, wrong := range []string{"", "secret-car-0002", "secret-car-00011"} {
		if h.Check(wrong) {
			t.Fatalf("%q matches", wrong)
		}
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(h), "$7$101$") || !h.Check("s3cret") || h.Check("s3cres") {
		t.Fatalf("hash %q", h)
	}
	h2, _ := HashPassword("s3cret")
	if h2 == h {
		t.Fatal("two hashes of one password share a salt")
	}
}

func TestPasswordHashMalformed(t *testing.T) {
	for _, s := range []string{"", "s3cret", "$6$abc$def", "$7$0$c2FsdA==$" + strings.Repeat("A", 88),
		"$7$101$!!$" + strings.Repeat("A", 88), "$7$101$c2FsdA==$c2hvcnQ="} {
		h := PasswordHash(s)
		if h.Validate() == nil {
			t.Errorf("%q validates", h)
		}
		if h.Check("") || h.Check("s3cret") {
			t.Errorf("%q matches", h)
		}
	}
}

// A device printed or logged shows no hash.
func TestPasswordHashRedacted(t *testing.T) {
	d := Device{Tenant: "t", Device: "d", MQTTUsername: "u", MQTTPasswordHash: PasswordHash(mosquittoHash)}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("device", "hash", d.MQTTPasswordHash)
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%+v", d), fmt.Sprintf("%#v", d), logged.String()} {
		if strings.Contains(s, "WkrRT45e") {
			t.Errorf("hash printed: %s", s)
		}
	}
}
