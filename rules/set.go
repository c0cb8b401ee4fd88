// Package rules loads, validates and compiles tariff files (the format of docs/tariffs.md)
// into a Set the rating engine prices records with. Tariff values are data; each rule
// kind (zones, rates, offers, device fees) is code here.
package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Set is every tariff in force or scheduled, indexed by tenant. It is immutable once
// built, so the engine can share it across goroutines and swap it atomically.
type Set struct {
	Tariffs  []*Tariff // in file order
	byTenant map[string][]*Tariff
	Hash     string // sha256 over the loaded files, for change detection and logs
}

// Load reads a tariff file, or every *.yaml and *.yml file of a directory (not
// recursive, in name order), validates each and the set as a whole. The error lists
// every problem (see Problems).
func Load(path string) (*Set, error) {
	files, err := tariffFiles(path)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files...)
}

func tariffFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	var files []string
	for _, e := range ents {
		n := e.Name()
		if !e.IsDir() && !strings.HasPrefix(n, ".") && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			files = append(files, filepath.Join(path, n))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load rules: no *.yaml or *.yml file in %s", path)
	}
	return files, nil
}

// LoadFiles compiles the given tariff files as one set.
func LoadFiles(files ...string) (*Set, error) {
	datas := make([][]byte, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("load rules: %w", err)
		}
		datas[i] = b
	}
	return build(files, datas)
}

func build(files []string, datas [][]byte) (*Set, error) {
	var errs Errors
	var ts []*Tariff
	for i, f := range files {
		t, err := Parse(f, datas[i])
		if err != nil {
			errs = append(errs, Problems(err)...)
			continue
		}
		ts = append(ts, t)
	}
	s, err := NewSet(ts...)
	if err != nil {
		errs = append(errs, Problems(err)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	s.Hash = contentHash(files, datas)
	return s, nil
}

// NewSet indexes compiled tariffs, checking that tariffs sharing a tenant take turns by
// distinct valid_from (and that ids are unique).
func NewSet(ts ...*Tariff) (*Set, error) {
	s := &Set{Tariffs: ts, byTenant: map[string][]*Tariff{}}
	var errs Errors
	ids := map[string]*Tariff{}
	for _, t := range ts {
		if o, dup := ids[t.ID]; dup && o.ValidFrom == t.ValidFrom {
			errs = append(errs, &Error{File: t.File, Line: t.line["id"], Key: "id",
				Msg: fmt.Sprintf("tariff %q is also defined in %s with the same valid_from", t.ID, o.File)})
		}
		ids[t.ID] = t
		for _, ten := range t.Tenants {
			for _, o := range s.byTenant[ten] {
				if o.ValidFrom == t.ValidFrom {
					key, ln := "valid_from", t.line["valid_from"]
					if ln == 0 {
						key, ln = "tenants", t.line["tenants"]
					}
					errs = append(errs, &Error{File: t.File, Line: ln, Key: key,
						Msg: fmt.Sprintf("tenant %q is also priced by %s (%s) from %s: tariffs of one tenant need distinct valid_from",
							ten, o.ID, o.File, fmtValidFrom(o.ValidFrom))})
				}
			}
			s.byTenant[ten] = append(s.byTenant[ten], t)
		}
	}
	for _, list := range s.byTenant {
		sort.SliceStable(list, func(i, j int) bool { return list[i].ValidFrom < list[j].ValidFrom })
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

func fmtValidFrom(ms int64) string {
	if ms == NoValidFrom {
		return "always (no valid_from)"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// Lookup returns the tariff pricing tenant at instant t (ms): the one with the latest
// valid_from <= t. Nil when none does.
func (s *Set) Lookup(tenant string, t int64) *Tariff {
	list := s.byTenant[tenant]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].ValidFrom <= t {
			return list[i]
		}
	}
	return nil
}

// FeeTariff returns the tariff whose device_fee prices tenant's period [start, end): the
// one in force at start or, if none was, the first that comes into force within the
// period. Nil when there is none; the result may still have no device_fee.
func (s *Set) FeeTariff(tenant string, start, end int64) *Tariff {
	if t := s.Lookup(tenant, start); t != nil {
		return t
	}
	for _, t := range s.byTenant[tenant] {
		if t.ValidFrom > start && t.ValidFrom < end {
			return t
		}
	}
	return nil
}

// Tenants lists the tenants the set prices, sorted.
func (s *Set) Tenants() []string {
	out := make([]string, 0, len(s.byTenant))
	for t := range s.byTenant {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
