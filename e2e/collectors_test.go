package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/record"
)

const (
	collectorsKey = "acme-e2e-0123456789abcdef" // the HTTP API key of tenant acme
	dtlsIdentity  = "meter-9@acme"
	dtlsKey       = "s3cret-meter-9"
)

// TestCoAPAndHTTPToKafka runs the mediator binary with its CoAP (plain UDP in dev mode
// and DTLS PSK) and HTTP collectors on kfake, feeds it with libcoap's coap-client and
// curl in every body kind the collectors take (plain JSON, SenML JSON, SenML CBOR, JSON
// Lines of canonical records), plus one malformed CoAP payload (4.00) and one malformed
// JSON Lines line (400), then reads topics usage and rejected back, read committed from
// the start, and checks every field of the exact records that landed, each exactly once.
func TestCoAPAndHTTPToKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	notls := tool(t, "coap-client-notls")
	openssl := tool(t, "coap-client-openssl")
	curl := tool(t, "curl")

	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close) // after the mediator's cleanup (LIFO): it drains into a live broker
	kafkaAddr := kc.ListenAddrs()[0]

	dir := t.TempDir()
	regFile := filepath.Join(dir, "devices.yaml")
	reg := `strict: true
devices:
  - tenant: acme
    device: dev-udp                 # dev mode: admitted by the path, no credentials
  - tenant: acme
    device: meter-9
    coap_psk_identity: "` + dtlsIdentity + `"
    coap_psk: "` + dtlsKey + `"
`
	writeFile(t, regFile, []byte(reg))
	udpPorts := freeUDPPorts(t, 2)
	coapAddr, dtlsAddr := addr(udpPorts[0]), addr(udpPorts[1])
	httpAddr, medListen := addr(freePort(t)), addr(freePort(t))
	cfg := fmt.Sprintf(`listen: %s
log_level: warn
kafka:
  brokers: [%s]
  partitions: 4
  linger: 2ms
mqtt:
  enabled: false
coap:
  enabled: true
  listen: %s
  dtls_listen: %s
  dev_mode: true
  dev_mode_force: true  # dev mode beside DTLS and a strict registry, for this test only
  registry_file: %s
http:
  enabled: true
  listen: %s
  keys:
    - tenant: acme
      key: %q
`, medListen, kafkaAddr, coapAddr, dtlsAddr, regFile, httpAddr, collectorsKey)
	cfgFile := filepath.Join(dir, "mediator.yaml")
	writeFile(t, cfgFile, []byte(cfg))
	med := start(t, filepath.Join(binDir, "mediator"), "run", "--config", cfgFile)
	waitReady(t, "http://"+medListen+"/readyz", med)

	// Record times: whole seconds an hour ago, inside every accepted window.
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	ms := func(d time.Duration) int64 { return at(d).UnixMilli() }
	rfc := func(d time.Duration) string { return at(d).Format(time.RFC3339) }
	since := time.Now().UnixMilli()

	// --- CoAP, plain UDP, dev mode: /usage/<tenant>/<device>.
	udpURL := "coap://" + coapAddr + "/usage/acme/dev-udp"
	plain := fmt.Sprintf(`{"seq":1,"ts":%d,"end":%q,"bytes_up":1200,"bytes_down":340,"events":2,"rating_group":7,`+
		`"plmn":"262-01","cell":"cell-7","lat":52.52,"lon":13.405,"rat":"nb_iot","slice_sst":1,"slice_sd":"ABCDEF"}`,
		ms(0), rfc(time.Minute))
	wantCoAP(t, ctx, notls, "2.04", "-m", "post", "-t", "50", "-e", plain, udpURL)

	senml := fmt.Sprintf(`[{"bn":"dev-udp:","bt":%d,"n":"id","vs":"s-1"},{"n":"bytes_down","u":"B","v":4096},`+
		`{"n":"duration","u":"s","v":90},{"n":"plmn","vs":"310-260"},{"n":"rat","vs":"LTE-M"},`+
		`{"n":"lat","v":48.125},{"n":"lon","v":11.5}]`, at(2*time.Minute).Unix())
	wantCoAP(t, ctx, notls, "2.04", "-m", "post", "-t", "110", "-e", senml, udpURL)

	pack, err := cbor.Marshal([]map[int]any{
		{-2: "dev-udp:", -3: at(3 * time.Minute).Unix(), 0: "id", 3: "c-1"},
		{0: "events", 2: 5},
		{0: "cell", 3: "0x1A2B"},
		{0: "id", 6: 60, 3: "c-2"},
		{0: "bytes_up", 1: "B", 6: 60, 2: 512},
		{0: "slice_sst", 6: 60, 2: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	cborFile := filepath.Join(dir, "pack.cbor")
	writeFile(t, cborFile, pack)
	wantCoAP(t, ctx, notls, "2.04", "-m", "post", "-t", "112", "-f", cborFile, udpURL)

	// A malformed payload: 4.00 once its rejection is on topic rejected.
	badCoAP := `{"seq":9,"bytes_up":"lots"}`
	diag := wantCoAP(t, ctx, notls, "4.00", "-m", "post", "-t", "50", "-e", badCoAP, udpURL)

	// --- CoAP over DTLS: the PSK identity names the device.
	dtlsBody := fmt.Sprintf(`{"id":"d-1","ts":%q,"end":%q,"bytes_up":77,"duration_ms":30000,"rating_group":42}`,
		rfc(4*time.Minute), rfc(4*time.Minute+30*time.Second))
	wantCoAP(t, ctx, openssl, "2.04", "-u", dtlsIdentity, "-k", dtlsKey, "-m", "post", "-t", "50", "-e", dtlsBody,
		"coaps://"+dtlsAddr+"/usage")

	// --- HTTP.
	httpURL := "http://" + httpAddr + "/v1/usage"
	stamp := func(d time.Duration) string { return at(d).Format(record.TimeLayout) }
	jsonl := fmt.Sprintf(`{"event_id":"gw-1","tenant":"acme","device":"gw-dev-1","source":"mqtt","start_time":%q,"end_time":%q,`+
		`"received_time":"2000-01-01T00:00:00.000Z","bytes_up":1000,"bytes_down":2000,"duration_ms":300000,"events":1,`+
		`"rating_group":10,"plmn":"901-70","cell":"abc/1","lat":-33.8688,"lon":151.2093,"rat":"NR","slice_sst":2,"slice_sd":"00FF0A"}`+"\r\n"+
		"\n"+
		`{"event_id":"http:acme:gw-2","tenant":"acme","device":"gw-dev-2","start_time":%q,"bytes_up":5,"lat":null,"lon":null,"slice_sst":null}`+"\n",
		stamp(5*time.Minute), stamp(10*time.Minute), stamp(6*time.Minute))
	status, body := postHTTP(t, ctx, curl, httpURL, "application/x-ndjson", jsonl)
	if status != 202 || strings.TrimSpace(body) != `{"accepted":2}` {
		t.Fatalf("JSON Lines: got %d %s, want 202 {\"accepted\":2}", status, body)
	}
	plainHTTP := fmt.Sprintf(`[{"id":"p-1","ts":%q,"events":4,"rat":"WLAN"},{"seq":2,"ts":%d,"bytes_up":10}]`,
		rfc(7*time.Minute), ms(7*time.Minute+time.Second))
	status, body = postHTTP(t, ctx, curl, httpURL+"?device=gw-dev-3", "application/json", plainHTTP)
	if status != 202 || strings.TrimSpace(body) != `{"accepted":2}` {
		t.Fatalf("plain JSON: got %d %s, want 202 {\"accepted\":2}", status, body)
	}
	// One good line and one malformed one: the good one is produced, the bad one
	// rejected, the answer is 400.
	goodLine := fmt.Sprintf(`{"event_id":"gw-4","tenant":"acme","device":"gw-dev-4","start_time":%q,"events":9}`, stamp(8*time.Minute))
	badLine := fmt.Sprintf(`{"event_id":"gw-5","tenant":"acme","device":"gw-dev-4","start_time":%q,"bytes_up":"lots"}`, stamp(8*time.Minute))
	status, body = postHTTP(t, ctx, curl, httpURL, "application/x-ndjson", goodLine+"\n"+badLine+"\n")
	var partial struct {
		Accepted, Rejected int
		Errors             []struct {
			Line    int
			Reason  string
			Message string
		}
	}
	if err := json.Unmarshal([]byte(body), &partial); err != nil || status != 400 || partial.Accepted != 1 || partial.Rejected != 1 ||
		len(partial.Errors) != 1 || partial.Errors[0].Line != 2 || partial.Errors[0].Reason != "bad_json" {
		t.Fatalf("malformed line: got %d %s (%v), want 400 with accepted 1, rejected 1, line 2 bad_json", status, body, err)
	}
	until := time.Now().UnixMilli()

	// --- What Kafka holds.
	usage := func(source, device, id string, start, end time.Duration) record.Usage {
		return record.Usage{EventID: source + ":acme:" + device + ":" + id, Tenant: "acme", Device: device, Source: source,
			StartTime: ms(start), EndTime: ms(end)}
	}
	u1 := usage("coap", "dev-udp", "1", 0, time.Minute)
	u1.BytesUp, u1.BytesDown, u1.Events, u1.RatingGroup = 1200, 340, 2, 7
	u1.PLMN, u1.Cell, u1.Lat, u1.Lon, u1.HasPos, u1.RAT = "262-01", "cell-7", 52.52, 13.405, true, "NB-IoT"
	u1.SliceSST, u1.HasSlice, u1.SliceSD = 1, true, "abcdef"
	u2 := usage("coap", "dev-udp", "s-1", 2*time.Minute, 2*time.Minute)
	u2.BytesDown, u2.DurationMs, u2.PLMN, u2.RAT, u2.Lat, u2.Lon, u2.HasPos = 4096, 90000, "310-260", "LTE-M", 48.125, 11.5, true
	u3 := usage("coap", "dev-udp", "c-1", 3*time.Minute, 3*time.Minute)
	u3.Events, u3.Cell = 5, "0x1A2B"
	u4 := usage("coap", "dev-udp", "c-2", 4*time.Minute, 4*time.Minute)
	u4.BytesUp, u4.SliceSST, u4.HasSlice = 512, 3, true
	u5 := usage("coap", "meter-9", "d-1", 4*time.Minute, 4*time.Minute+30*time.Second)
	u5.BytesUp, u5.DurationMs, u5.RatingGroup = 77, 30000, 42
	h1 := record.Usage{EventID: "http:acme:gw-1", Tenant: "acme", Device: "gw-dev-1", Source: "http",
		StartTime: ms(5 * time.Minute), EndTime: ms(10 * time.Minute), BytesUp: 1000, BytesDown: 2000, DurationMs: 300000,
		Events: 1, RatingGroup: 10, PLMN: "901-70", Cell: "abc/1", Lat: -33.8688, Lon: 151.2093, HasPos: true, RAT: "NR",
		SliceSST: 2, HasSlice: true, SliceSD: "00ff0a"}
	h2 := record.Usage{EventID: "http:acme:gw-2", Tenant: "acme", Device: "gw-dev-2", Source: "http",
		StartTime: ms(6 * time.Minute), EndTime: ms(6 * time.Minute), BytesUp: 5}
	h3 := usage("http", "gw-dev-3", "p-1", 7*time.Minute, 7*time.Minute)
	h3.Events, h3.RAT = 4, "WLAN"
	h4 := usage("http", "gw-dev-3", "2", 7*time.Minute+time.Second, 7*time.Minute+time.Second)
	h4.BytesUp = 10
	h5 := record.Usage{EventID: "http:acme:gw-4", Tenant: "acme", Device: "gw-dev-4", Source: "http",
		StartTime: ms(8 * time.Minute), EndTime: ms(8 * time.Minute), Events: 9}
	want := []record.Usage{u1, u2, u3, u4, u5, h1, h2, h3, h4, h5}

	gotUsage, gotRejects := consumeAll(t, ctx, kafkaAddr, len(want), 2)

	byID := map[string][]record.Usage{}
	for _, u := range gotUsage {
		if u.ReceivedTime < since || u.ReceivedTime > until {
			t.Errorf("%s: received_time %d outside the test's %d..%d", u.EventID, u.ReceivedTime, since, until)
		}
		u.ReceivedTime = 0
		byID[u.EventID] = append(byID[u.EventID], u)
	}
	for _, w := range want {
		got := byID[w.EventID]
		delete(byID, w.EventID)
		switch {
		case len(got) == 0:
			t.Errorf("%s: missing from topic usage", w.EventID)
		case len(got) > 1:
			t.Errorf("%s: %d times on topic usage, want once", w.EventID, len(got))
		case !reflect.DeepEqual(got[0], w):
			t.Errorf("%s:\n got %+v\nwant %+v", w.EventID, got[0], w)
		}
	}
	for id, extra := range byID {
		t.Errorf("unexpected record(s) on topic usage: %s %+v", id, extra)
	}

	// Rejections: the CoAP one carries the body, the HTTP one the line.
	sort.Slice(gotRejects, func(i, j int) bool { return gotRejects[i].Source < gotRejects[j].Source })
	if len(gotRejects) != 2 {
		t.Fatalf("topic rejected holds %d rejections, want 2: %+v", len(gotRejects), gotRejects)
	}
	for _, r := range gotRejects {
		if r.Received < since || r.Received > until {
			t.Errorf("rejection %s: received_time %d outside the test's %d..%d", r.Source, r.Received, since, until)
		}
	}
	rc, rh := gotRejects[0], gotRejects[1]
	if rc.Source != "coap" || rc.Tenant != "acme" || rc.Device != "dev-udp" || rc.Reason != "bad_field" ||
		rc.Detail != "bytes_up must be a number" || string(rc.Raw) != badCoAP {
		t.Errorf("CoAP rejection: got %+v (raw %q)", rc, rc.Raw)
	}
	if want := rc.Reason + ": " + rc.Detail; diag != want {
		t.Errorf("CoAP 4.00 diagnostic %q, want %q", diag, want)
	}
	if rh.Source != "http" || rh.Tenant != "acme" || rh.Device != "" || rh.Reason != "bad_json" ||
		string(rh.Raw) != badLine || !strings.HasPrefix(rh.Detail, "line 2: ") || !strings.Contains(rh.Detail, "bytes_up") {
		t.Errorf("HTTP rejection: got %+v (raw %q)", rh, rh.Raw)
	}
	if rh.Detail != "line 2: "+partial.Errors[0].Message {
		t.Errorf("HTTP rejection detail %q, the 400 said %q", rh.Detail, partial.Errors[0].Message)
	}
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeUDPPorts returns n distinct free loopback UDP ports (see stablePort).
func freeUDPPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ports = append(ports, stablePort(t))
	}
	return ports
}

// wantCoAP runs a libcoap client and checks the code of the last response it printed
// ("2.04", "4.00"); it returns that response's payload (the diagnostic of an error).
func wantCoAP(t *testing.T, ctx context.Context, bin, code string, args ...string) string {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// -v 6 prints every PDU ("v:1 t:ACK c:2.04 i:53a0 {01} [ ] :: 'payload'"); -B bounds the wait.
	cmd := exec.CommandContext(cctx, bin, append([]string{"-v", "6", "-B", "5"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Fatalf("%s: %v", bin, err)
	}
	var last string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "v:1 ") && !strings.Contains(l, " c:POST ") {
			last = l
		}
	}
	if !strings.Contains(last, " t:ACK ") || !strings.Contains(last, " c:"+code+" ") {
		t.Fatalf("%s %s: want ACK %s, last response %q; client printed:\n%s", filepath.Base(bin), strings.Join(args, " "), code, last, out)
	}
	_, payload, _ := strings.Cut(last, " :: ")
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(payload), "'"), "'")
}

// postHTTP posts body with curl as tenant acme and returns the status and response body.
func postHTTP(t *testing.T, ctx context.Context, curl, url, contentType, body string) (int, string) {
	t.Helper()
	out := run(t, ctx, curl, body, "-sS", "--max-time", "15", "-X", "POST", "-H", "Authorization: Bearer "+collectorsKey,
		"-H", "Content-Type: "+contentType, "--data-binary", "@-", "-w", "\n%{http_code}", url)
	i := strings.LastIndexByte(out, '\n')
	var status int
	if _, err := fmt.Sscan(out[i+1:], &status); err != nil {
		t.Fatalf("curl printed %q", out)
	}
	return status, out[:i]
}

// consumeAll reads topics usage and rejected from the start, read committed, until at
// least the wanted counts arrived and nothing more came for a while.
func consumeAll(t *testing.T, ctx context.Context, kafkaAddr string, wantUsage, wantRejects int) ([]record.Usage, []record.Rejection) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics("usage", "rejected"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var (
		usage   []record.Usage
		rejects []record.Rejection
		quiet   time.Time // when the wanted counts were reached
	)
	for {
		if len(usage) >= wantUsage && len(rejects) >= wantRejects {
			if quiet.IsZero() {
				quiet = time.Now()
			} else if time.Since(quiet) > 2*time.Second {
				return usage, rejects // more would be extras: none came
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("reading Kafka: %v with %d of %d usage records and %d of %d rejections",
				ctx.Err(), len(usage), wantUsage, len(rejects), wantRejects)
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := cl.PollFetches(pctx)
		cancel()
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Errorf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case "usage":
				recs, err := record.DecodeUsage(r.Value, nil)
				if err != nil {
					t.Errorf("decode usage at partition %d offset %d: %v", r.Partition, r.Offset, err)
					return
				}
				usage = append(usage, recs...)
			case "rejected":
				rej, err := record.ParseRejection(r.Value)
				if err != nil {
					t.Errorf("decode rejection at partition %d offset %d: %v", r.Partition, r.Offset, err)
					return
				}
				rejects = append(rejects, rej)
			}
		})
	}
}
