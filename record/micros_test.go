package record

import (
	"math"
	"strings"
	"testing"
)

func TestMicrosString(t *testing.T) {
	for _, tc := range []struct {
		m    Micros
		want string
	}{
		{0, "0.000000"},
		{2, "0.000002"},
		{-1, "-0.000001"},
		{-1_250_000, "-1.250000"},
		{1_000_000, "1.000000"},
		{123_456_789, "123.456789"},
		{-999_999, "-0.999999"},
		{math.MaxInt64, "9223372036854.775807"},
		{math.MinInt64, "-9223372036854.775808"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("Micros(%d).String() = %q, want %q", int64(tc.m), got, tc.want)
		}
		if got := string(tc.m.Append([]byte("x="))); got != "x="+tc.want {
			t.Errorf("Micros(%d).Append = %q", int64(tc.m), got)
		}
	}
}

func TestParseMicros(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Micros
	}{
		{"0", 0},
		{"0.000002", 2},
		{"-1.25", -1_250_000},
		{"-1.250000", -1_250_000},
		{"+3", 3_000_000},
		{"5.", 5_000_000},
		{".5", 500_000},
		{"-0", 0},
		{"0042.1", 42_100_000},
		{"9223372036854.775807", math.MaxInt64},
		{"-9223372036854.775808", math.MinInt64},
	} {
		got, err := ParseMicros(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMicros(%q) = %d, %v; want %d", tc.in, int64(got), err, int64(tc.want))
		}
	}
	for _, tc := range []struct{ in, msg string }{
		{"", "empty"},
		{"0.0000001", "more than six decimals"},
		{"1.2345678", "more than six decimals"},
		{"-", "no digits"},
		{".", "no digits"},
		{"1.2.3", "not a decimal"},
		{"1e6", "not a decimal"},
		{" 1", "not a decimal"},
		{"1,5", "not a decimal"},
		{"+-1", "not a decimal"},
		{"9223372036854.775808", "out of range"},
		{"-9223372036854.775809", "out of range"},
		{"9223372036859", "out of range"},
		{"99999999999999999999", "out of range"},
	} {
		got, err := ParseMicros(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseMicros(%q) = %d, %v; want error %q", tc.in, int64(got), err, tc.msg)
		}
	}
}
