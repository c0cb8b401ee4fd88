package payload

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"fleetmeter/record"
)

var knownReasons = map[string]bool{
	ReasonUnknownFormat: true, ReasonBadJSON: true, ReasonBadSenML: true, ReasonBadCBOR: true,
	ReasonUnknownField: true, ReasonDuplicateField: true, ReasonBadField: true, ReasonBadUnit: true,
	ReasonNegativeCounter: true, ReasonBadCounter: true, ReasonCounterOverflow: true,
	ReasonAbsurdCounter: true, ReasonBadTime: true, ReasonBadInterval: true, ReasonFutureTime: true,
	ReasonStaleTime: true, ReasonTooManyRecords: true, ReasonDeviceMismatch: true,
	ReasonMissingIdentity: true, ReasonBadPosition: true, ReasonBadID: true, ReasonDuplicateID: true,
	ReasonBadTenant: true, ReasonBadDevice: true,
}

func addSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds for %s", pattern)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkParse runs the invariants every kind keeps: no panic; on error the caller's slice
// comes back as it was with a known reason; on success every record is valid, carries
// the transport's identity and a distinct event id, and a second parse agrees.
func checkParse(t *testing.T, kind Kind, data []byte, wellFormed func([]byte) bool) {
	var p Parser
	prefix := []record.Usage{{EventID: "keep"}}
	got, err := p.Parse(kind, data, testID, testReceived, prefix)
	if err != nil {
		var ie *record.InvalidError
		if !errors.As(err, &ie) || !knownReasons[ie.Reason] {
			t.Fatalf("error %v is not an InvalidError with a known reason", err)
		}
		if len(got) != 1 || got[0].EventID != "keep" {
			t.Fatalf("error %v but into changed", err)
		}
		return
	}
	if got[0].EventID != "keep" {
		t.Fatal("prefix overwritten")
	}
	if !wellFormed(data) {
		t.Fatalf("accepted input the reference decoder calls malformed: %q", data)
	}
	seen := map[string]bool{}
	for i := range got[1:] {
		u := &got[1+i]
		if err := u.Validate(); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if u.Tenant != testID.Tenant || u.Device != testID.Device || u.Source != testID.Source || u.ReceivedTime != testReceived {
			t.Fatalf("record %d: identity %q %q %q", i, u.Tenant, u.Device, u.Source)
		}
		if seen[u.EventID] {
			t.Fatalf("event_id %s twice", u.EventID)
		}
		seen[u.EventID] = true
	}
	again, err := p.Parse(kind, data, testID, testReceived, nil)
	if err != nil || !slices.Equal(again, got[1:]) {
		t.Fatalf("second parse differs: %v", err)
	}
}

func FuzzParseJSON(f *testing.F) {
	addSeeds(f, "testdata/json/*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, KindJSON, data, json.Valid)
	})
}

func FuzzParseSenMLJSON(f *testing.F) {
	addSeeds(f, "testdata/senml/*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, KindSenMLJSON, data, json.Valid)
	})
}

func FuzzParseSenMLCBOR(f *testing.F) {
	addSeeds(f, "testdata/senml/*.cbor")
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, KindSenMLCBOR, data, func(b []byte) bool { return cbor.Wellformed(b) == nil })
	})
}
