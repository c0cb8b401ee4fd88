package httpin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"fleetmeter/kafka"
	"fleetmeter/record"
)

// TestRefusedLargeInputBounded runs the collector on the real Kafka producer (kfake, the
// broker's default 1 MB message limit). A refused 1.5 MB body, and a refused 1.5 MB line
// beside a valid one, used to become rejections carrying the whole input: Kafka refused
// them (MESSAGE_TOO_LARGE) and the client got 503 on every retry. Now each is a 400 whose
// rejection holds the input's first 64 KiB, its length and SHA-256, and another tenant
// posting at the same time gets its 202.
func TestRefusedLargeInputBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = cluster.ListenAddrs()
	kcfg.Partitions = 1 // every tenant shares the partitions
	prod, err := kafka.NewProducer(ctx, kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(context.Background())
	s := startServer(t, testConfig(), prod)

	big := `{"id":"x","events":"` + strings.Repeat("9", 1500000) + `"}` // plain JSON the parser refuses
	bigLine := `{"event_id":"` + strings.Repeat("e", 1500000) + `"}`    // a JSON line refused as bad_json
	valid := canon("acme", "d1", "ok-1")
	type post struct {
		name, key, ct, query, body string
		status                     int
		raw                        string // the refused input, "" for none
	}
	posts := []post{
		{"whole body", acmeKey, "application/json", "?device=d1", big, 400, big},
		{"one line", acmeKey, "application/x-ndjson", "", valid + "\n" + bigLine + "\n", 400, bigLine},
		{"other tenant", farmKey, "application/x-ndjson", "", canon("farmco", "f1", "ok-2"), 202, ""},
	}
	var wg sync.WaitGroup
	for _, p := range posts {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.Addr()+Path+p.query, strings.NewReader(p.body))
			req.Header.Set("Authorization", "Bearer "+p.key)
			req.Header.Set("Content-Type", p.ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("%s: %v", p.name, err)
				return
			}
			var out bytes.Buffer
			out.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != p.status || out.Len() > 8<<10 {
				t.Errorf("%s: %d, want %d: %.300s", p.name, resp.StatusCode, p.status, out.String())
			}
		})
	}
	wg.Wait()

	rejs := readRejected(t, ctx, kcfg.Brokers, 2)
	for _, p := range posts {
		if p.raw == "" {
			continue
		}
		sum := sha256.Sum256([]byte(p.raw))
		found := false
		for _, r := range rejs {
			if r.Tenant == "acme" && bytes.HasPrefix([]byte(p.raw), r.Raw) && len(r.Raw) == 64<<10 &&
				r.RawLen == int64(len(p.raw)) && r.RawSHA256 == hex.EncodeToString(sum[:]) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no bounded rejection among %d", p.name, len(rejs))
		}
	}
	for _, r := range rejs {
		if n := len(r.AppendJSON(nil)); n > 128<<10 {
			t.Errorf("a rejection of %d bytes", n)
		}
	}
}

// readRejected reads n rejections from topic rejected.
func readRejected(t *testing.T, ctx context.Context, brokers []string, n int) []record.Rejection {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(kafka.TopicRejected),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []record.Rejection
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%d of %d rejections: %v", len(out), n, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			r, err := record.ParseRejection(rec.Value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		})
	}
	return out
}

// TestRejectionsBounded: whatever a client sends, each rejection and each listed error
// stays small: a huge tenant, device, field or undecodable gzip body is refused with
// its start kept, not with all of it.
func TestRejectionsBounded(t *testing.T) {
	sink := &fakeSink{}
	s := startServer(t, testConfig(), sink)
	huge := strings.Repeat("ä", 600000) // 1.2 MB, multi-byte: clipping keeps UTF-8 valid
	lines := strings.Join([]string{
		canon(huge, "d1", "a"),   // tenant_mismatch quoting the tenant
		canon("acme", huge, "b"), // bad_device
		strings.Replace(canon("acme", "d1", "c"), `"events":1`, `"events":1,"plmn":"`+huge+`"`, 1), // bad_field
	}, "\n")
	resp, out := do(t, s, http.MethodPost, "application/x-ndjson", "", lines)
	if resp.StatusCode != 400 || len(out) > 4<<10 || !utf8.ValidString(out) {
		t.Errorf("%d, %d bytes: %.300s", resp.StatusCode, len(out), out)
	}
	var gz bytes.Buffer
	gz.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	gz.WriteString(strings.Repeat("not deflate", 200000))
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+Path, bytes.NewReader(gz.Bytes()))
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("gzip: %v %v", resp, err)
	}
	_, rejs := sink.got()
	if len(rejs) != 4 {
		t.Fatalf("%d rejections", len(rejs))
	}
	for i, r := range rejs {
		js := r.AppendJSON(nil)
		back, err := record.ParseRejection(js)
		if len(js) > 100<<10 || err != nil || len(back.Device) > 256 || !utf8.ValidString(back.Detail) || len(back.Raw) == 0 {
			t.Errorf("rejection %d (%s): %d bytes as JSON, device %d bytes, %v", i, r.Reason, len(js), len(back.Device), err)
		}
	}
	if r := rejs[3]; r.Reason != "bad_encoding" || !bytes.Equal(r.Raw, gz.Bytes()[:64<<10]) || r.RawLen != int64(gz.Len()) {
		t.Errorf("gzip rejection: %s, %d raw bytes of %d", r.Detail, len(r.Raw), r.RawLen)
	}
}
