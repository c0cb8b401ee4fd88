package record

import "time"

// AppendTime appends the instant ms (Unix milliseconds) as TimeLayout writes it in UTC:
// 2006-01-02T15:04:05.000Z. Years 0000-9999 are written here, from the day count
// (H. Hinnant's civil_from_days), a fifth of the time time.AppendFormat takes, which a
// JSON Lines export spent a third of its encoding in; other years go through time.
func AppendTime(b []byte, ms int64) []byte {
	const first, last = -62167219200000, 253402300799999 // 0000-01-01T00:00:00.000Z, 9999-12-31T23:59:59.999Z
	if ms < first || ms > last {
		return time.UnixMilli(ms).UTC().AppendFormat(b, TimeLayout)
	}
	days, msOfDay := ms/86_400_000, ms%86_400_000
	if msOfDay < 0 {
		days, msOfDay = days-1, msOfDay+86_400_000
	}
	z := days + 719_468 // days since 0000-03-01
	era := z / 146_097
	if z < 0 && z%146_097 != 0 {
		era--
	}
	doe := z - era*146_097                                   // day of the 400-year era
	yoe := (doe - doe/1460 + doe/36_524 - doe/146_096) / 365 // year of the era
	doy := doe - (365*yoe + yoe/4 - yoe/100)                 // day of the year from March 1
	mp := (5*doy + 2) / 153                                  // month from March
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if mp >= 10 {
		month = mp - 9
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	sec := msOfDay / 1000
	b = append4(b, year)
	b = append(b, '-')
	b = append2(b, month)
	b = append(b, '-')
	b = append2(b, day)
	b = append(b, 'T')
	b = append2(b, sec/3600)
	b = append(b, ':')
	b = append2(b, sec/60%60)
	b = append(b, ':')
	b = append2(b, sec%60)
	b = append(b, '.', byte('0'+msOfDay%1000/100), byte('0'+msOfDay%100/10), byte('0'+msOfDay%10))
	return append(b, 'Z')
}

func append2(b []byte, v int64) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

func append4(b []byte, v int64) []byte {
	return append(b, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}
