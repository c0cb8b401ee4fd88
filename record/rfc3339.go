package record

// text is what the byte-level checks of this package read: a string, or bytes a decoder
// has not turned into a string yet (so checking costs no allocation).
type text interface{ ~string | ~[]byte }

// ParseRFC3339 is the project's one reader of timestamps: an RFC 3339 date-time
// (section 5.6),
//
//	YYYY-MM-DD "T" hh:mm:ss ["." 1*digit] ("Z" | ("+" | "-") hh:mm)
//
// returned as milliseconds since the Unix epoch, UTC. Digits below the millisecond are
// truncated (the earlier instant, as time.Time.UnixMilli). Per the note in section 5.6,
// "T" and "Z" may also be written "t" and "z". Refused, though time.Parse takes some of
// them: a space instead of "T", a comma before the fraction, a "." without digits,
// one-digit fields, offsets beyond 23:59 or without a colon, and the leap second :60
// (Unix time has none). Years run 0000 to 9999; what a record may hold is narrower
// (Validate). It does not allocate.
func ParseRFC3339[T text](s T) (ms int64, ok bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return 0, false
	}
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' && s[10] != 't' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	yh, ok1 := twoDigits(s[0], s[1])
	yl, ok2 := twoDigits(s[2], s[3])
	month, ok3 := twoDigits(s[5], s[6])
	day, ok4 := twoDigits(s[8], s[9])
	hour, ok5 := twoDigits(s[11], s[12])
	minute, ok6 := twoDigits(s[14], s[15])
	sec, ok7 := twoDigits(s[17], s[18])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return 0, false
	}
	year := yh*100 + yl
	if month < 1 || month > 12 || day < 1 || day > daysInMonth(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	i := 19
	var frac int64
	if s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if i-start < 3 {
				frac = frac*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == start {
			return 0, false
		}
		for n := i - start; n < 3; n++ {
			frac *= 10
		}
	}
	if i >= len(s) {
		return 0, false
	}
	var offset int64 // seconds east of UTC
	switch s[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if len(s)-i != len("+07:00") || s[i+3] != ':' {
			return 0, false
		}
		oh, ok1 := twoDigits(s[i+1], s[i+2])
		om, ok2 := twoDigits(s[i+4], s[i+5])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, false
		}
		offset = int64(oh*3600 + om*60)
		if s[i] == '-' {
			offset = -offset
		}
		i += len("+07:00")
	default:
		return 0, false
	}
	if i != len(s) {
		return 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - offset
	return secs*1000 + frac, true
}

func twoDigits(a, b byte) (int, bool) {
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

func daysInMonth(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date
// (Howard Hinnant's algorithm; year >= 0 here).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
