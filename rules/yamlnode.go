package rules

import (
	"fmt"
	"strconv"
	"time"

	"github.com/goccy/go-yaml/ast"

	"fleetmeter/record"
)

// walker reads a tariff's YAML AST strictly, collecting every problem with its line and
// key instead of stopping at the first.
type walker struct {
	file string
	errs Errors
}

func line(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

func (w *walker) errf(n ast.Node, key, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: line(n), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) errAt(ln int, key, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: ln, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// field is one key of a mapping as written in the file.
type field struct {
	key   string
	keyN  ast.Node
	value ast.Node
	path  string
}

// plain refuses YAML features a tariff has no use for; they would only hide values.
func (w *walker) plain(n ast.Node, path string) bool {
	switch n.(type) {
	case *ast.AnchorNode, *ast.AliasNode, *ast.TagNode, *ast.MergeKeyNode:
		w.errf(n, path, "anchors, aliases, tags and merge keys are not supported")
		return false
	}
	return true
}

// mapping returns the entries of a mapping node; allowed names the keys it may hold
// (nil: any key).
func (w *walker) mapping(n ast.Node, path string, allowed ...string) ([]field, bool) {
	if !w.plain(n, path) {
		return nil, false
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		w.errf(n, path, "must be a mapping")
		return nil, false
	}
	out := make([]field, 0, len(m.Values))
	for _, mv := range m.Values {
		if !w.plain(mv.Key, path) {
			continue
		}
		k, ok := scalarText(mv.Key)
		if !ok {
			w.errf(mv.Key, path, "keys must be scalars")
			continue
		}
		p := join(path, k)
		if allowed != nil && !contains(allowed, k) {
			w.errf(mv.Key, p, "unknown key")
			continue
		}
		if !w.plain(mv.Value, p) {
			continue
		}
		out = append(out, field{key: k, keyN: mv.Key, value: mv.Value, path: p})
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (w *walker) sequence(n ast.Node, path string) ([]ast.Node, bool) {
	s, ok := n.(*ast.SequenceNode)
	if !ok {
		w.errf(n, path, "must be a list")
		return nil, false
	}
	for _, v := range s.Values {
		if !w.plain(v, path) {
			return nil, false
		}
	}
	return s.Values, true
}

// scalarText is the text of a scalar as written (quotes removed).
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.IntegerNode, *ast.FloatNode:
		return v.GetToken().Value, true
	}
	return "", false
}

func (w *walker) str(f field) (string, bool) {
	s, ok := scalarText(f.value)
	if !ok || s == "" {
		w.errf(f.value, f.path, "must be a non-empty string")
		return "", false
	}
	return s, true
}

// dec reads a decimal from the literal text of the node: never through float64.
func (w *walker) dec(n ast.Node, path string) (Dec, bool) {
	s, ok := scalarText(n)
	if !ok {
		w.errf(n, path, "must be a decimal number")
		return Dec{}, false
	}
	d, err := ParseDec(s)
	if err != nil {
		w.errf(n, path, "%v", err)
		return Dec{}, false
	}
	return d, true
}

func (w *walker) float(n ast.Node, path string) (float64, bool) {
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode:
		v, err := strconv.ParseFloat(n.GetToken().Value, 64)
		if err == nil {
			return v, true
		}
	}
	w.errf(n, path, "must be a number")
	return 0, false
}

func (w *walker) uint(n ast.Node, path string, max uint64) (uint64, bool) {
	if _, ok := n.(*ast.IntegerNode); ok {
		v, err := strconv.ParseUint(n.GetToken().Value, 10, 64)
		if err == nil && v <= max {
			return v, true
		}
	}
	w.errf(n, path, "must be an integer from 0 to %d", max)
	return 0, false
}

func (w *walker) int(n ast.Node, path string) (int64, bool) {
	if _, ok := n.(*ast.IntegerNode); ok {
		v, err := strconv.ParseInt(n.GetToken().Value, 10, 64)
		if err == nil {
			return v, true
		}
	}
	w.errf(n, path, "must be an integer")
	return 0, false
}

func (w *walker) bool(f field) (bool, bool) {
	if b, ok := f.value.(*ast.BoolNode); ok {
		return b.Value, true
	}
	w.errf(f.value, f.path, "must be true or false")
	return false, false
}

func (w *walker) time(n ast.Node, path string) (int64, bool) {
	if s, ok := n.(*ast.StringNode); ok {
		if ms, ok := record.ParseRFC3339(s.Value); ok {
			return ms, true
		}
	}
	w.errf(n, path, "must be an RFC 3339 time such as 2026-11-01T00:00:00Z")
	return 0, false
}

func (w *walker) duration(n ast.Node, path string) (int64, bool) {
	if s, ok := n.(*ast.StringNode); ok {
		d, err := time.ParseDuration(s.Value)
		if err == nil && d >= time.Millisecond {
			return d.Milliseconds(), true
		}
	}
	w.errf(n, path, "must be a positive duration such as 24h or 90m")
	return 0, false
}
