package rating

import (
	"fmt"
	"strconv"
)

// A period is a UTC calendar month, numbered year*12 + month-1 so consecutive months are
// consecutive integers.
type month int32

const noMonth month = -1 << 31

const msPerDay = 86_400_000

// monthOf returns the UTC month holding the instant ms.
func monthOf(ms int64) month {
	days := ms / msPerDay
	if ms%msPerDay < 0 {
		days--
	}
	y, m, _ := civil(days)
	return month(y*12 + m - 1)
}

// bounds returns the month's [start, end) in ms.
func (m month) bounds() (int64, int64) {
	y, mo := floorDiv(int64(m), 12), int64(m)-floorDiv(int64(m), 12)*12+1
	start := daysFromCivil(y, mo, 1) * msPerDay
	ny, nmo := y, mo+1
	if nmo == 13 {
		ny, nmo = y+1, 1
	}
	return start, daysFromCivil(ny, nmo, 1) * msPerDay
}

// String is the period name, YYYY-MM.
func (m month) String() string {
	y := floorDiv(int64(m), 12)
	mo := int64(m) - y*12 + 1
	return fmt.Sprintf("%04d-%02d", y, mo)
}

// parsePeriod reads YYYY-MM.
func parsePeriod(s string) (month, error) {
	if len(s) != 7 || s[4] != '-' {
		return 0, fmt.Errorf("period %q: want YYYY-MM", s)
	}
	y, err1 := strconv.Atoi(s[:4])
	m, err2 := strconv.Atoi(s[5:])
	if err1 != nil || err2 != nil || m < 1 || m > 12 {
		return 0, fmt.Errorf("period %q: want YYYY-MM", s)
	}
	return month(y*12 + m - 1), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant).
func civil(z int64) (y, m, d int) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	yy := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	dd := doy - (153*mp+2)/5 + 1
	mm := mp + 3
	if mm > 12 {
		mm -= 12
	}
	if mm <= 2 {
		yy++
	}
	return int(yy), int(mm), int(dd)
}

func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
