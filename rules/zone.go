package rules

import (
	"math"
	"strings"

	"fleetmeter/record"
)

// EarthRadiusKm is the mean earth radius (IUGG) used for geofence circles.
const EarthRadiusKm = 6371.0088

// matcher finds the first zone, in file order, that a record falls in. Each criterion kind
// is indexed on its own and the lowest zone index among the hits wins, which is exactly
// "tried in order, first match wins" without scanning every zone per record.
type matcher struct {
	geos  []geofence // in zone order
	cells patterns
	plmns patterns
	def   int
}

// patterns indexes the cells or plmns entries of the zones: exact ones in a map, prefixes
// in zone order.
type patterns struct {
	exact map[string]int
	// minExact is the lowest zone of exact: a record already in a lower zone skips the map.
	minExact int
	prefixes []prefix
}

type prefix struct {
	p    string
	zone int
}

type geofence struct {
	zone int
	// bounding box prefilter, degrees; a hit is then decided exactly.
	minLat, maxLat, minLon, maxLon float64
	circle                         bool
	lat, lon, cosLat, radiusKm     float64
	// inner decides most hits inside a circle without the trigonometry: a point with
	// dLat^2 + cosLat*dLon^2 <= inner (radians) is inside (see contains); -1 when unused.
	inner float64
	ring  [][2]float64 // [lat, lon]
}

// Zone returns the index in t.Zones of the zone u falls in.
func (t *Tariff) Zone(u *record.Usage) int { return t.match.zone(u) }

func (m *matcher) zone(u *record.Usage) int {
	best := math.MaxInt
	if u.HasPos {
		for i := range m.geos {
			g := &m.geos[i]
			if g.zone >= best {
				break
			}
			if g.contains(u.Lat, u.Lon) {
				best = g.zone
				break
			}
		}
	}
	if u.Cell != "" {
		best = m.cells.lookup(u.Cell, best)
	}
	if u.PLMN != "" {
		best = m.plmns.lookup(u.PLMN, best)
	}
	if best == math.MaxInt {
		return m.def
	}
	return best
}

func (ps *patterns) lookup(s string, best int) int {
	if len(ps.exact) > 0 && ps.minExact < best {
		if z, ok := ps.exact[s]; ok && z < best {
			best = z
		}
	}
	prefixes := ps.prefixes
	for i := range prefixes {
		if prefixes[i].zone >= best {
			break
		}
		if strings.HasPrefix(s, prefixes[i].p) {
			return prefixes[i].zone
		}
	}
	return best
}

func (g *geofence) contains(lat, lon float64) bool {
	if lat < g.minLat || lat > g.maxLat || lon < g.minLon || lon > g.maxLon {
		return false
	}
	if g.circle {
		// The haversine term is sin^2(dLat/2) + cosLat*cos(lat)*sin^2(dLon/2), at most
		// (dLat^2 + cosLat*dLon^2)/4 since |sin x| <= |x|, cos(lat) <= 1, cosLat >= 0. inner
		// keeps that bound 0.1% below the radius's term, far more than rounding moves
		// either side, so a point it lets through is one the formula finds inside too.
		dLat, dLon := (lat-g.lat)*rad, (lon-g.lon)*rad
		if dLat*dLat+g.cosLat*dLon*dLon <= g.inner {
			return true
		}
		return haversineKm(g.lat, g.lon, g.cosLat, lat, lon) <= g.radiusKm
	}
	return inRing(g.ring, lat, lon)
}

const rad = math.Pi / 180

// haversineKm is the great-circle distance on a sphere of EarthRadiusKm.
func haversineKm(lat1, lon1, cosLat1, lat2, lon2 float64) float64 {
	sdLat := math.Sin((lat2 - lat1) * rad / 2)
	sdLon := math.Sin((lon2 - lon1) * rad / 2)
	a := sdLat*sdLat + cosLat1*math.Cos(lat2*rad)*sdLon*sdLon
	return 2 * EarthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}

// inRing applies the even-odd rule to a ring of [lat, lon] vertices, lon as x and lat as y.
func inRing(ring [][2]float64, lat, lon float64) bool {
	in := false
	for i, j := 0, len(ring)-1; i < len(ring); j, i = i, i+1 {
		yi, xi := ring[i][0], ring[i][1]
		yj, xj := ring[j][0], ring[j][1]
		if (yi > lat) != (yj > lat) && lon < (xj-xi)*(lat-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}

func newCircle(zone int, lat, lon, radiusKm float64) geofence {
	g := geofence{zone: zone, circle: true, lat: lat, lon: lon, cosLat: math.Cos(lat * rad), radiusKm: radiusKm,
		minLat: -90, maxLat: 90, minLon: -180, maxLon: 180, inner: -1}
	ang := radiusKm / EarthRadiusKm // radians
	if ang > 0 && ang < math.Pi/2 && g.cosLat >= 0 && lat >= -90 && lat <= 90 {
		s := math.Sin(ang / 2)
		g.inner = 4 * s * s * 0.999
	}
	// Generous margins: the box only skips the exact test, it never decides a hit.
	dLat := ang/rad*1.001 + 1e-6
	if lat-dLat > -90 && lat+dLat < 90 && ang < math.Pi/2 {
		g.minLat, g.maxLat = lat-dLat, lat+dLat
		dLon := math.Asin(math.Min(1, math.Sin(ang)/math.Cos(lat*rad)))/rad*1.001 + 1e-6
		if lon-dLon > -180 && lon+dLon < 180 && dLon < 90 {
			g.minLon, g.maxLon = lon-dLon, lon+dLon
		}
	}
	return g
}

func newPolygon(zone int, ring [][2]float64) geofence {
	g := geofence{zone: zone, ring: ring, minLat: 90, maxLat: -90, minLon: 180, maxLon: -180}
	for _, p := range ring {
		g.minLat, g.maxLat = math.Min(g.minLat, p[0]), math.Max(g.maxLat, p[0])
		g.minLon, g.maxLon = math.Min(g.minLon, p[1]), math.Max(g.maxLon, p[1])
	}
	return g
}

// add indexes a cells or plmns entry of zone (added in zone order): exact, or a prefix
// ending in '*'.
func (ps *patterns) add(pat string, zone int) {
	if p, ok := strings.CutSuffix(pat, "*"); ok {
		ps.prefixes = append(ps.prefixes, prefix{p: p, zone: zone})
		return
	}
	if ps.exact == nil {
		ps.exact, ps.minExact = map[string]int{}, zone
	}
	if _, dup := ps.exact[pat]; !dup {
		ps.exact[pat] = zone
		ps.minExact = min(ps.minExact, zone)
	}
}
