package coap

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"fleetmeter/ingest/registry"
	"fleetmeter/record"
)

// An hour ago, whole seconds: within the parser's accepted window whenever the test runs.
func testTime() time.Time { return time.Now().Add(-time.Hour).UTC().Truncate(time.Second) }

func usage(tenant, device, id string, at time.Time) record.Usage {
	return record.Usage{EventID: "coap:" + tenant + ":" + device + ":" + id, Tenant: tenant, Device: device,
		Source: record.SourceCoAP, StartTime: at.UnixMilli(), EndTime: at.UnixMilli()}
}

// Plain UDP in dev mode, one request per format; the exact records must reach the sink.
func TestLibcoapDevModeFormats(t *testing.T) {
	sink := &recSink{}
	cfg := devConfig()
	cfg.Registry, cfg.DevModeForce = testRegistry(t, true), true
	c := start(t, cfg, sink)
	url := "coap://" + c.Addr() + "/usage/farm/meter-7"
	at := testTime()
	since := time.Now()

	jsonBody := fmt.Sprintf(`{"id":"j-1","ts":%q,"bytes_up":1200,"bytes_down":34000,"events":3,"plmn":"262-01","rat":"NB-IoT","lat":52.52,"lon":13.405}`, at.Format(time.RFC3339))
	senml := fmt.Sprintf(`[{"bn":"meter-7:","bt":%d,"n":"id","vs":"s-1"},{"n":"bytes_up","u":"B","v":100},{"n":"duration","u":"s","v":60}]`, at.Unix())
	sniffed := fmt.Sprintf(`[{"id":"a-1","ts":%d,"events":1},{"id":"a-2","ts":%d,"events":2}]`, at.UnixMilli(), at.UnixMilli()+1000)
	cborPack, err := cbor.Marshal([]map[int]any{
		{-2: "meter-7:", -3: at.Unix(), 0: "id", 3: "c-1"},
		{0: "bytes_down", 1: "B", 2: 500},
		{0: "events", 2: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	cborFile := filepath.Join(t.TempDir(), "pack.cbor")
	if err := os.WriteFile(cborFile, cborPack, 0o600); err != nil {
		t.Fatal(err)
	}

	j := usage("farm", "meter-7", "j-1", at)
	j.BytesUp, j.BytesDown, j.Events, j.PLMN, j.RAT, j.Lat, j.Lon, j.HasPos = 1200, 34000, 3, "262-01", "NB-IoT", 52.52, 13.405, true
	s := usage("farm", "meter-7", "s-1", at)
	s.BytesUp, s.DurationMs = 100, 60000
	cb := usage("farm", "meter-7", "c-1", at)
	cb.BytesDown, cb.Events = 500, 2
	a1, a2 := usage("farm", "meter-7", "a-1", at), usage("farm", "meter-7", "a-2", at.Add(time.Second))
	a1.Events, a2.Events = 1, 2

	cases := []struct {
		name string
		args []string
		want []record.Usage
	}{
		{"json", []string{"-t", "50", "-e", jsonBody}, []record.Usage{j}},
		{"senml+json", []string{"-t", "110", "-e", senml}, []record.Usage{s}},
		{"senml+cbor", []string{"-t", "112", "-f", cborFile}, []record.Usage{cb}},
		{"sniffed", []string{"-e", sniffed}, []record.Usage{a1, a2}},
	}
	for i, tc := range cases {
		resp, all := coapClient(t, "coap-client-notls", append(append([]string{"-m", "post"}, tc.args...), url)...)
		wantResponse(t, resp, all, "ACK", "2.04")
		batches, rejects := sink.snapshot()
		if len(batches) != i+1 || len(rejects) != 0 {
			t.Fatalf("%s: %d batches, rejects %+v", tc.name, len(batches), rejects)
		}
		if got := stripReceived(t, since, batches[i]); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// Over DTLS the PSK identity names the device: POST /usage, or its own path.
func TestLibcoapDTLS(t *testing.T) {
	sink := &recSink{}
	cfg := DefaultConfig()
	cfg.Listen = ""
	cfg.DTLSListen = "127.0.0.1:0"
	reg, err := registry.Parse("devices.yaml", []byte(`strict: true
devices:
  - {tenant: acme, device: car-1, coap_psk_identity: car-1@acme, coap_psk: "secret-1"}
  - {tenant: acme, device: car-2, coap_psk_identity: car-2@acme, coap_psk: "0x7365637265742d32"}
`)) // car-2's hex key is "secret-2"
	if err != nil {
		t.Fatal(err)
	}
	cfg.Registry = registry.NewLive(reg)
	c := start(t, cfg, sink)
	at := testTime()
	since := time.Now()
	body := func(id string) string {
		return fmt.Sprintf(`{"id":%q,"ts":%d,"bytes_up":7}`, id, at.UnixMilli())
	}
	post := func(user, key, path, b string) ([]string, string) {
		return coapClient(t, "coap-client-openssl", "-u", user, "-k", key, "-m", "post", "-t", "50", "-e", b,
			"coaps://"+c.DTLSAddr()+path)
	}
	resp, all := post("car-1@acme", "secret-1", "/usage", body("d-1"))
	wantResponse(t, resp, all, "ACK", "2.04")
	resp, all = post("car-2@acme", "secret-2", "/usage/acme/car-2", body("d-2"))
	wantResponse(t, resp, all, "ACK", "2.04")

	// Reporting as another device: 4.03 and a rejection naming the real identity.
	resp, all = post("car-1@acme", "secret-1", "/usage/acme/car-2", body("d-3"))
	wantResponse(t, resp, all, "ACK", "4.03")
	if !strings.Contains(resp[len(resp)-1], "wrong_identity") {
		t.Fatalf("diagnostic: %q", resp[len(resp)-1])
	}

	batches, rejects := sink.snapshot()
	r1, r2 := usage("acme", "car-1", "d-1", at), usage("acme", "car-2", "d-2", at)
	r1.BytesUp, r2.BytesUp = 7, 7
	if len(batches) != 2 || !reflect.DeepEqual(stripReceived(t, since, batches[0]), []record.Usage{r1}) ||
		!reflect.DeepEqual(stripReceived(t, since, batches[1]), []record.Usage{r2}) {
		t.Fatalf("batches %+v", batches)
	}
	if len(rejects) != 1 || rejects[0].Reason != "wrong_identity" || rejects[0].Tenant != "acme" || rejects[0].Device != "car-1" ||
		string(rejects[0].Raw) != body("d-3") {
		t.Fatalf("rejects %+v", rejects)
	}
}

// A wrong key or an unknown identity fails the DTLS handshake: no request gets through.
func TestLibcoapDTLSBadCredentials(t *testing.T) {
	sink := &recSink{}
	cfg := DefaultConfig()
	cfg.Listen = ""
	cfg.DTLSListen = "127.0.0.1:0"
	cfg.Registry = testRegistry(t, true)
	c := start(t, cfg, sink)
	for _, cred := range [][2]string{{"car-1@acme", "wrong"}, {"nobody", "secret-1"}} {
		resp, all := coapClient(t, "coap-client-openssl", "-B", "2", "-u", cred[0], "-k", cred[1], "-m", "post", "-e", `{"id":"x"}`,
			"coaps://"+c.DTLSAddr()+"/usage")
		if len(resp) != 0 {
			t.Fatalf("%v: got a response: %s", cred, all)
		}
	}
	if b, r := sink.snapshot(); len(b) != 0 || len(r) != 0 {
		t.Fatalf("sink got %v %v", b, r)
	}
}

// A pack bigger than a block travels block-wise (Block1) and reaches the sink whole.
func TestLibcoapBlockwise(t *testing.T) {
	sink := &recSink{}
	c := start(t, devConfig(), sink)
	at := testTime()
	pack, want := bigPack(at, 300)
	if len(pack) < 4*1024 {
		t.Fatalf("pack of %d bytes is too small to need blocks", len(pack))
	}
	resp, all := coapClient(t, "coap-client-notls", "-m", "post", "-b", "512", "-t", "110", "-e", pack,
		"coap://"+c.Addr()+"/usage/farm/meter-7")
	wantResponse(t, resp, all, "ACK", "2.04")
	if !strings.Contains(resp[len(resp)-1], "Block1:") {
		t.Fatalf("final response without Block1: not block-wise?\n%s", all)
	}
	batches, _ := sink.snapshot()
	if len(batches) != 1 || len(batches[0]) != len(want) {
		t.Fatalf("want one batch of %d records, got %d batches", len(want), len(batches))
	}
	for i := range want {
		if got := batches[0][i]; got.StartTime != want[i].StartTime || got.BytesUp != want[i].BytesUp || got.EventID != want[i].EventID {
			t.Fatalf("record %d: got %+v want %+v", i, got, want[i])
		}
	}
}

// bigPack is a SenML JSON pack of n records, one per second.
func bigPack(at time.Time, n int) (string, []record.Usage) {
	var b strings.Builder
	var want []record.Usage
	fmt.Fprintf(&b, `[{"bn":"meter-7:","bt":%d,"n":"bytes_up","v":0}`, at.Unix())
	for i := 0; i < n; i++ {
		if i > 0 {
			fmt.Fprintf(&b, `,{"n":"bytes_up","t":%d,"v":%d}`, i, i)
		}
		fmt.Fprintf(&b, `,{"n":"id","t":%d,"vs":"b-%d"}`, i, i)
		u := usage("farm", "meter-7", "b-"+strconv.Itoa(i), at.Add(time.Duration(i)*time.Second))
		u.BytesUp = uint64(i)
		want = append(want, u)
	}
	b.WriteString("]")
	return b.String(), want
}

// NON requests are processed and answered NON.
func TestLibcoapNonConfirmable(t *testing.T) {
	sink := &recSink{}
	c := start(t, devConfig(), sink)
	resp, all := coapClient(t, "coap-client-notls", "-N", "-m", "post", "-t", "50",
		"-e", fmt.Sprintf(`{"id":"n-1","ts":%d}`, testTime().UnixMilli()), "coap://"+c.Addr()+"/usage/farm/meter-7")
	wantResponse(t, resp, all, "NON", "2.04")
	if b, _ := sink.snapshot(); len(b) != 1 || b[0][0].EventID != "coap:farm:meter-7:n-1" {
		t.Fatalf("batches %+v", b)
	}
}

// Refusals: each answered with its code and a diagnostic, each recorded as a rejection
// with its reason (except unauthenticated plain UDP, which is only counted).
func TestLibcoapRefusals(t *testing.T) {
	sink := &recSink{}
	cfg := devConfig()
	cfg.Registry, cfg.DevModeForce = testRegistry(t, true), true
	cfg.MaxBody = 2048
	c := start(t, cfg, sink)
	small := devConfig()
	small.MaxBody = 200
	cs := start(t, small, sink)
	prod := DefaultConfig() // no dev mode
	prod.Listen = "127.0.0.1:0"
	cp := start(t, prod, sink)
	at := testTime()
	good := fmt.Sprintf(`{"id":"r-1","ts":%d}`, at.UnixMilli())
	big, _ := bigPack(at, 300)
	cases := []struct {
		name, url, code, reason string
		args                    []string
	}{
		{"no identity", "coap://" + c.Addr() + "/usage", "4.01", "", []string{"-e", good}},
		{"plain udp without dev mode", "coap://" + cp.Addr() + "/usage/farm/meter-7", "4.01", "", []string{"-e", good}},
		{"unknown device", "coap://" + c.Addr() + "/usage/farm/meter-99", "4.01", "unknown_device", []string{"-e", good}},
		{"dev path naming a DTLS device", "coap://" + c.Addr() + "/usage/acme/car-1", "4.01", "", []string{"-e", good}},
		{"bad payload", "coap://" + c.Addr() + "/usage/farm/meter-7", "4.00", "unknown_field", []string{"-e", `{"id":"r-2","colour":"red"}`}},
		{"senml mismatch", "coap://" + c.Addr() + "/usage/farm/meter-7", "4.00", "device_mismatch", []string{"-t", "110", "-e", `[{"bn":"other:","n":"events","v":1}]`}},
		{"unsupported format", "coap://" + c.Addr() + "/usage/farm/meter-7", "4.15", "unsupported_format", []string{"-t", "0", "-e", good}},
		{"oversize datagram", "coap://" + cs.Addr() + "/usage/farm/meter-7", "4.13", "too_large", []string{"-e", big[:600]}},
		{"oversize blockwise", "coap://" + c.Addr() + "/usage/farm/meter-7", "4.13", "", []string{"-b", "512", "-e", big}},
		{"unknown path", "coap://" + c.Addr() + "/metrics", "4.04", "", []string{"-e", good}},
	}
	for _, tc := range cases {
		_, before := sink.snapshot()
		resp, all := coapClient(t, "coap-client-notls", append(append([]string{"-m", "post"}, tc.args...), tc.url)...)
		wantResponse(t, resp, all, "ACK", tc.code)
		_, after := sink.snapshot()
		if tc.reason == "" {
			if len(after) != len(before) {
				t.Fatalf("%s: unexpected rejection %+v", tc.name, after[len(after)-1])
			}
			continue
		}
		if len(after) != len(before)+1 {
			t.Fatalf("%s: want a rejection, have %d", tc.name, len(after)-len(before))
		}
		r := after[len(after)-1]
		if r.Reason != tc.reason || !record.KnownReason(r.Reason) || r.Source != "coap" || r.Tenant != "farm" || !strings.Contains(resp[len(resp)-1], tc.reason+": ") {
			t.Fatalf("%s: rejection %+v, response %q", tc.name, r, resp[len(resp)-1])
		}
	}
	if b, _ := sink.snapshot(); len(b) != 0 {
		t.Fatalf("refused input reached the sink: %+v", b)
	}
	_, rejects := sink.snapshot()
	for _, r := range rejects {
		if r.Reason == "too_large" && string(r.Raw) != big[:600] {
			t.Fatalf("too_large raw is %q", r.Raw)
		}
	}
}
