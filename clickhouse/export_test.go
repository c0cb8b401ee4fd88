package clickhouse

import "fleetmeter/record"

// RatedColumnsForBench returns the INSERT column names and the column slices for rows, so
// the raw benchmark appends exactly what the store would.
func RatedColumnsForBench(rows []record.Rated) ([]string, []any) {
	var c ratedColumns
	c.fill(rows)
	return ratedColumnNames, c.values()
}
