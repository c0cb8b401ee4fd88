package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

var topKeys = []string{"id", "version", "currency", "tenants", "valid_from", "period", "zones",
	"mobility", "rates", "slices", "offers", "device_fee"}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// Parse compiles one tariff file. file names it in errors; data is its content. The error,
// if any, is an Errors listing every problem found.
func Parse(file string, data []byte) (*Tariff, error) {
	w := &walker{file: file}
	t := w.parse(data)
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	sum := sha256.Sum256(data)
	t.Stamp = t.Version + "+" + hex.EncodeToString(sum[:4])
	t.File = file
	return t, nil
}

func (w *walker) parse(data []byte) *Tariff {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			key := strings.TrimSpace(ye.GetToken().Value)
			if key == "" {
				key = "(yaml)"
			}
			w.errAt(ye.GetToken().Position.Line, key, "%s", ye.GetMessage())
		} else {
			w.errAt(0, "(yaml)", "%v", err)
		}
		return nil
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		w.errAt(1, "(yaml)", "a tariff file holds exactly one YAML document")
		return nil
	}
	fields, ok := w.mapping(f.Docs[0].Body, "", topKeys...)
	if !ok {
		return nil
	}
	top := map[string]field{}
	t := &Tariff{ValidFrom: NoValidFrom, Period: "month", Window: 24 * 3600 * 1000, LateTolerance: 48 * 3600 * 1000, StationaryMax: 1, NomadicMax: 5,
		line: map[string]int{}}
	for _, fl := range fields {
		top[fl.key] = fl
		t.line[fl.key] = line(fl.keyN)
	}
	for _, k := range []string{"id", "version", "currency", "tenants", "zones", "rates"} {
		if _, ok := top[k]; !ok {
			w.errAt(line(f.Docs[0].Body), k, "missing")
		}
	}
	if fl, ok := top["id"]; ok {
		t.ID, _ = w.str(fl)
	}
	if fl, ok := top["version"]; ok {
		t.Version, _ = w.str(fl)
	}
	if fl, ok := top["currency"]; ok {
		if s, _ := scalarText(fl.value); currencyRE.MatchString(s) {
			t.Currency = s
		} else {
			w.errf(fl.value, fl.path, "must be an ISO 4217 code of three capital letters, such as EUR")
		}
	}
	if fl, ok := top["tenants"]; ok {
		t.Tenants = w.strings(fl.value, fl.path, true)
		if len(t.Tenants) == 0 {
			w.errf(fl.value, fl.path, "must list at least one tenant")
		}
	}
	if fl, ok := top["valid_from"]; ok {
		t.ValidFrom, _ = w.time(fl.value, fl.path)
	}
	if fl, ok := top["period"]; ok {
		if s, _ := scalarText(fl.value); s != "month" {
			w.errf(fl.value, fl.path, "must be month")
		}
	}
	if fl, ok := top["zones"]; ok {
		w.zones(t, fl)
	}
	if fl, ok := top["mobility"]; ok {
		w.mobility(t, fl)
	}
	sc := &scaler{}
	if fl, ok := top["rates"]; ok {
		w.rates(t, fl, sc)
	}
	if fl, ok := top["slices"]; ok {
		w.slices(t, fl, sc)
	}
	if fl, ok := top["offers"]; ok {
		w.offers(t, fl, sc)
	}
	if fl, ok := top["device_fee"]; ok {
		w.deviceFee(t, fl)
	}
	if len(w.errs) > 0 {
		return nil
	}
	sc.apply(w, t)
	t.compileArith()
	return t
}

// strings reads a list of non-empty strings.
func (w *walker) strings(n ast.Node, path string, unique bool) []string {
	vals, ok := w.sequence(n, path)
	if !ok {
		return nil
	}
	var out []string
	for i, v := range vals {
		p := path + "[" + strconv.Itoa(i) + "]"
		s, ok := scalarText(v)
		if !ok || s == "" {
			w.errf(v, p, "must be a non-empty string")
			continue
		}
		if unique && slices.Contains(out, s) {
			w.errf(v, p, "duplicate %q", s)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (w *walker) zones(t *Tariff, top field) {
	vals, ok := w.sequence(top.value, top.path)
	if !ok {
		return
	}
	m := &t.match
	m.def = -1
	for i, v := range vals {
		zp := "zones[" + strconv.Itoa(i) + "]"
		fields, ok := w.mapping(v, zp, "name", "geofence", "cells", "plmns", "default")
		if !ok {
			continue
		}
		z := Zone{}
		criteria := 0
		var defN ast.Node = v
		for _, fl := range fields {
			switch fl.key {
			case "name":
				z.Name, _ = w.str(fl)
				if z.Name == "*" {
					w.errf(fl.value, fl.path, `"*" is reserved for price fallbacks`)
				}
				for _, o := range t.Zones {
					if o.Name == z.Name && z.Name != "" {
						w.errf(fl.value, fl.path, "duplicate zone %q", z.Name)
					}
				}
			case "default":
				z.Default, _ = w.bool(fl)
				defN = fl.keyN
			case "geofence":
				criteria++
				w.geofence(m, i, fl)
			case "cells", "plmns":
				criteria++
				pats := w.strings(fl.value, fl.path, false)
				for j, p := range pats {
					if strings.Contains(strings.TrimSuffix(p, "*"), "*") {
						w.errf(fl.value, fl.path+"["+strconv.Itoa(j)+"]", "%q: '*' may only end a pattern", p)
						continue
					}
					if fl.key == "cells" {
						m.cells.add(p, i)
					} else {
						m.plmns.add(p, i)
					}
				}
			}
		}
		if z.Name == "" && !hasKey(fields, "name") {
			w.errf(v, zp+".name", "missing")
		}
		switch {
		case z.Default && criteria > 0:
			w.errf(defN, zp+".default", "the default zone takes no geofence, cells or plmns")
		case z.Default && m.def >= 0:
			w.errf(defN, zp+".default", "a second default zone (the first is %q)", t.Zones[m.def].Name)
		case z.Default:
			m.def = i
		case criteria == 0:
			w.errf(v, zp, "needs a geofence, cells, plmns or default: true")
		}
		t.Zones = append(t.Zones, z)
	}
	if m.def < 0 && len(vals) > 0 {
		w.errf(top.keyN, "zones", "exactly one zone must be the default (default: true); none is")
	}
	if len(vals) == 0 {
		w.errf(top.keyN, "zones", "must list at least the default zone")
	}
}

func hasKey(fields []field, k string) bool {
	for _, f := range fields {
		if f.key == k {
			return true
		}
	}
	return false
}

func (w *walker) geofence(m *matcher, zone int, top field) {
	fields, ok := w.mapping(top.value, top.path, "circle", "polygon")
	if !ok {
		return
	}
	if len(fields) != 1 {
		w.errf(top.value, top.path, "needs exactly one of circle or polygon")
		return
	}
	fl := fields[0]
	if fl.key == "circle" {
		cf, ok := w.mapping(fl.value, fl.path, "lat", "lon", "radius_km")
		if !ok {
			return
		}
		var v [3]float64
		for i, k := range []string{"lat", "lon", "radius_km"} {
			found := false
			for _, c := range cf {
				if c.key == k {
					found = true
					v[i], ok = w.float(c.value, c.path)
					if !ok {
						return
					}
					if !w.coordOK(c, k, v[i]) {
						return
					}
				}
			}
			if !found {
				w.errf(fl.value, fl.path+"."+k, "missing")
				return
			}
		}
		m.geos = append(m.geos, newCircle(zone, v[0], v[1], v[2]))
		return
	}
	pts, ok := w.sequence(fl.value, fl.path)
	if !ok {
		return
	}
	ring := make([][2]float64, 0, len(pts))
	for i, p := range pts {
		pp := fl.path + "[" + strconv.Itoa(i) + "]"
		pair, ok := w.sequence(p, pp)
		if !ok {
			return
		}
		if len(pair) != 2 {
			w.errf(p, pp, "must be a [lat, lon] pair")
			return
		}
		lat, ok1 := w.float(pair[0], pp)
		lon, ok2 := w.float(pair[1], pp)
		if !ok1 || !ok2 {
			return
		}
		if !w.coordOK(field{value: pair[0], path: pp}, "lat", lat) || !w.coordOK(field{value: pair[1], path: pp}, "lon", lon) {
			return
		}
		ring = append(ring, [2]float64{lat, lon})
	}
	if len(ring) < 3 {
		w.errf(fl.value, fl.path, "a polygon needs at least 3 points")
		return
	}
	m.geos = append(m.geos, newPolygon(zone, ring))
}

func (w *walker) coordOK(f field, k string, v float64) bool {
	switch {
	case k == "lat" && (v < -90 || v > 90):
		w.errf(f.value, f.path, "latitude %v out of [-90, 90]", v)
	case k == "lon" && (v < -180 || v > 180):
		w.errf(f.value, f.path, "longitude %v out of [-180, 180]", v)
	case k == "radius_km" && !(v > 0):
		w.errf(f.value, f.path, "radius must be positive")
	default:
		return true
	}
	return false
}

func (w *walker) mobility(t *Tariff, top field) {
	fields, ok := w.mapping(top.value, top.path, "window", "stationary_max", "nomadic_max", "late_tolerance")
	if !ok {
		return
	}
	var nomadic ast.Node = top.value
	for _, fl := range fields {
		switch fl.key {
		case "window":
			t.Window, _ = w.duration(fl.value, fl.path)
		case "late_tolerance":
			t.LateTolerance, _ = w.duration(fl.value, fl.path)
		case "stationary_max":
			v, _ := w.uint(fl.value, fl.path, 1<<20)
			t.StationaryMax = int(v)
		case "nomadic_max":
			v, _ := w.uint(fl.value, fl.path, 1<<20)
			t.NomadicMax, nomadic = int(v), fl.value
		}
	}
	if t.NomadicMax < t.StationaryMax {
		w.errf(nomadic, "mobility.nomadic_max", "must be >= stationary_max (%d)", t.StationaryMax)
	}
}
