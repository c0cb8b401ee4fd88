package record

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestReasonTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if !codeShape.MatchString(r.Code) {
			t.Errorf("code %q is not snake_case", r.Code)
		}
		if seen[r.Code] {
			t.Errorf("code %q twice in the table", r.Code)
		}
		seen[r.Code] = true
		if r.Meaning == "" || strings.Contains(r.Meaning, "\n") {
			t.Errorf("code %q: meaning %q is not one line", r.Code, r.Meaning)
		}
		if !KnownReason(r.Code) {
			t.Errorf("KnownReason(%q) = false", r.Code)
		}
	}
	// Every Reason constant of reason.go is in the table, and every table code is a constant.
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "reason.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]bool{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(name.Name, "Reason") {
						code, _ := strconv.Unquote(lit.Value)
						consts[code] = true
						if !seen[code] {
							t.Errorf("%s = %q is not in the table", name.Name, code)
						}
					}
				}
			}
		}
	}
	for code := range seen {
		if !consts[code] {
			t.Errorf("table code %q has no constant", code)
		}
	}
	if KnownReason("bad_payload") || KnownReason("") {
		t.Error("KnownReason accepts codes outside the table")
	}
	if got := ReasonOf(errors.New("boom")); got != ReasonInvalid {
		t.Errorf("ReasonOf(plain error) = %q, want %q", got, ReasonInvalid)
	}
	if got := ReasonOf(fmt.Errorf("wrap: %w", &InvalidError{Reason: ReasonBadTime})); got != ReasonBadTime {
		t.Errorf("ReasonOf(wrapped bad_time) = %q", got)
	}
	if got := ReasonOf(&InvalidError{Reason: "made_up"}); got != ReasonInvalid {
		t.Errorf("ReasonOf(made_up) = %q, want %q", got, ReasonInvalid)
	}
}

// codeShape is what a reason code looks like.
var codeShape = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
