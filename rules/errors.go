package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one problem in a tariff file. It names the file, the line and the key (a dotted
// path such as "rates.data.prices.home.stationary" or "zones[2].geofence.circle").
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg) }

// Errors is every problem found in one load; Load returns it when any exists.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Problems flattens err into the tariff problems it holds; an error that is not a tariff
// problem (an unreadable directory) comes back as one Error without a line.
func Problems(err error) []*Error {
	if err == nil {
		return nil
	}
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return []*Error{{Msg: err.Error()}}
}
