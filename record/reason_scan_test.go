package record

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// reasonLiteralExceptions lists the reason literals of files outside record's owners
// that are not in the reason table yet, as "path: literal" (path from the repository
// root), each with what its file should do instead. Adopt the constant and delete the
// entry: TestReasonLiteralsInTable fails on an unknown literal anywhere, and logs the
// entries here that no longer match a literal.
var reasonLiteralExceptions = map[string]string{
	// Catch-alls spelled their own way: record.ReasonOf(err) returns the error's code, or
	// the one catch-all, record.ReasonInvalid.
	"rater/rater.go: rating_error":       "record.ReasonOf(err)",
	"cmd/rater/offline.go: rating_error": "record.ReasonOf(err)",
	// Refusals of an MQTT connection by the embedded broker's auth hook, counted by
	// reason: not input rejections, so not codes of the table. Name the variable for
	// what it is (refusal) and these entries go.
	"cmd/fleetmeter/mqttauth.go: reserved_client_id": "not a rejection: rename the variable",
	"cmd/fleetmeter/mqttauth.go: anonymous":          "not a rejection: rename the variable",
	"cmd/fleetmeter/mqttauth.go: unknown_user":       "not a rejection: rename the variable",
	"cmd/fleetmeter/mqttauth.go: no_password":        "not a rejection: rename the variable",
	"cmd/fleetmeter/mqttauth.go: bad_password":       "not a rejection: rename the variable",
}

// constantsOnly are the paths (files, or folders ending in /) whose reasons must be
// constants, not literals: the owners of the rules.
var constantsOnly = []string{"record/", "ingest/payload/", "ingest/mqtt/", "ingest/ingest.go", "ingest/metrics.go"}

// reasonSite is a string literal used as a rejection reason.
type reasonSite struct {
	pos  token.Position
	path string // from the repository root
	code string
}

// TestReasonLiteralsInTable scans every non-test Go file of the repository for string
// literals used as reasons and holds each to the table: a Reason field or variable
// assigned a literal, a Reason constant, a literal passed for a parameter named reason or
// returned as a result named reason, a literal label of a Rejected counter. In record's
// owners (constantsOnly) any such literal is an error: they spell reasons as constants.
func TestReasonLiteralsInTable(t *testing.T) {
	root := repoRoot(t)
	sites := scanReasonLiterals(t, root)
	if len(sites) == 0 {
		t.Fatal("no reason literals found: the scan is broken")
	}
	used := map[string]bool{}
	for _, s := range sites {
		key := s.path + ": " + s.code
		switch {
		case ownedPath(s.path):
			if s.path != "record/reason.go" {
				t.Errorf("%s: reason literal %q: use the record.Reason* constant", s.pos, s.code)
			}
		case KnownReason(s.code):
		case reasonLiteralExceptions[key] != "":
			used[key] = true
		default:
			t.Errorf("%s: reason %q is not in the reason table (record/reason.go): use a record.Reason* constant, "+
				"or add the code to the table with its meaning", s.pos, s.code)
		}
	}
	for key := range reasonLiteralExceptions {
		if !used[key] {
			t.Logf("reasonLiteralExceptions[%q] matches no literal any more: delete the entry", key)
		}
	}
}

func ownedPath(path string) bool {
	for _, p := range constantsOnly {
		if path == p || strings.HasSuffix(p, "/") && strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// TestReasonScanFinds: the scan sees each shape it claims to, so a refactor of it cannot
// silently find nothing.
func TestReasonScanFinds(t *testing.T) {
	const src = `package x
const ReasonA = "c1"
var reasonB = "c2"
type R struct{ Reason string }
func refuse(at int, reason, msg string) {}
func check() (reason, msg string) { return "c3", "" }
func f(r *R, m M) {
	_ = R{Reason: "c4"}
	r.Reason = "c5"
	reason := "c6"
	reason = "c7"
	refuse(1, "c8", "not a reason")
	reject := func(reason string) {}
	reject("c9")
	m.Rejected.WithLabelValues("mqtt", "c10")
	r.Reason, reason = "c11", "c12"
	_ = "not_a_reason"
	reason = ""
}
const ReasonFile = "reason.json"`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	sites := reasonLiterals(t, fset, map[string]*ast.File{"x.go": f})
	var got []string
	for _, s := range sites {
		got = append(got, s.code)
	}
	sort.Slice(got, func(i, j int) bool { return len(got[i]) < len(got[j]) || len(got[i]) == len(got[j]) && got[i] < got[j] })
	want := []string{"c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12"}
	if !slices.Equal(got, want) {
		t.Errorf("scan found %q, want %q", got, want)
	}
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// scanReasonLiterals parses every non-test .go file under root, package by package (a
// parameter named reason is matched within its own package).
func scanReasonLiterals(t *testing.T, root string) []reasonSite {
	fset := token.NewFileSet()
	pkgs := map[string]map[string]*ast.File{} // dir -> relative path -> file
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Errorf("parse %s: %v", rel, err)
			return nil
		}
		dir := filepath.Dir(rel)
		if pkgs[dir] == nil {
			pkgs[dir] = map[string]*ast.File{}
		}
		pkgs[dir][filepath.ToSlash(rel)] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var sites []reasonSite
	for _, files := range pkgs {
		sites = append(sites, reasonLiterals(t, fset, files)...)
	}
	return sites
}

func isReasonName(name string) bool { return strings.EqualFold(name, "reason") }

// reasonLiterals finds the reason literals of one package's files.
func reasonLiterals(t *testing.T, fset *token.FileSet, files map[string]*ast.File) []reasonSite {
	// Functions (and function literals bound to a name) with a parameter named reason.
	params := map[string][]int{}
	addParams := func(name string, ft *ast.FuncType) {
		i := 0
		for _, field := range ft.Params.List {
			if len(field.Names) == 0 {
				i++
				continue
			}
			for _, n := range field.Names {
				if isReasonName(n.Name) {
					params[name] = append(params[name], i)
				}
				i++
			}
		}
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				addParams(n.Name.Name, n.Type)
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					if fl, ok := rhs.(*ast.FuncLit); ok && i < len(n.Lhs) {
						if id, ok := n.Lhs[i].(*ast.Ident); ok {
							addParams(id.Name, fl.Type)
						}
					}
				}
			}
			return true
		})
	}

	var sites []reasonSite
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		f := files[path]
		// add records e if it is a string literal: "" is no reason, and a declared name
		// (ReasonFile = "reason.json") counts only if its value looks like a code.
		add := func(e ast.Expr, declared bool) {
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return
			}
			code, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Errorf("%s: %v", fset.Position(lit.Pos()), err)
				return
			}
			if code == "" || declared && !codeShape.MatchString(code) {
				return
			}
			sites = append(sites, reasonSite{pos: fset.Position(lit.Pos()), path: path, code: code})
		}
		nameOf := func(e ast.Expr) string {
			switch e := e.(type) {
			case *ast.Ident:
				return e.Name
			case *ast.SelectorExpr:
				return e.Sel.Name
			}
			return ""
		}
		var results [][]int // reason result indexes of the enclosing functions
		var walk func(n ast.Node) bool
		walk = func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl, *ast.FuncLit:
				var ft *ast.FuncType
				var body *ast.BlockStmt
				if fd, ok := n.(*ast.FuncDecl); ok {
					ft, body = fd.Type, fd.Body
				} else {
					fl := n.(*ast.FuncLit)
					ft, body = fl.Type, fl.Body
				}
				var idx []int
				if ft.Results != nil {
					i := 0
					for _, field := range ft.Results.List {
						if len(field.Names) == 0 {
							i++
							continue
						}
						for _, nm := range field.Names {
							if isReasonName(nm.Name) {
								idx = append(idx, i)
							}
							i++
						}
					}
				}
				if body != nil {
					results = append(results, idx)
					ast.Inspect(body, walk)
					results = results[:len(results)-1]
				}
				return false
			case *ast.ReturnStmt:
				if len(results) > 0 {
					for _, i := range results[len(results)-1] {
						if i < len(n.Results) {
							add(n.Results[i], false)
						}
					}
				}
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && isReasonName(id.Name) {
					add(n.Value, false)
				}
			case *ast.AssignStmt:
				if len(n.Lhs) == len(n.Rhs) {
					for i, lhs := range n.Lhs {
						if isReasonName(nameOf(lhs)) {
							add(n.Rhs[i], false)
						}
					}
				}
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if i < len(n.Values) && (strings.HasPrefix(name.Name, "Reason") || strings.HasPrefix(name.Name, "reason")) {
						add(n.Values[i], true)
					}
				}
			case *ast.CallExpr:
				name := nameOf(n.Fun)
				for _, i := range params[name] {
					if i < len(n.Args) {
						add(n.Args[i], false)
					}
				}
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "WithLabelValues" &&
					strings.EqualFold(nameOf(sel.X), "rejected") && len(n.Args) > 0 {
					add(n.Args[len(n.Args)-1], false)
				}
			}
			return true
		}
		ast.Inspect(f, walk)
	}
	return sites
}
