package registry

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// fileDoc is the registry file's shape; decoding is strict (unknown keys are errors).
type fileDoc struct {
	Strict  bool        `yaml:"strict"`
	Devices []deviceDoc `yaml:"devices"`
}

type deviceDoc struct {
	Tenant          string `yaml:"tenant"`
	Device          string `yaml:"device"`
	CoAPPSKIdentity string `yaml:"coap_psk_identity"`
	CoAPPSK         string `yaml:"coap_psk"`
	MQTTUsername    string `yaml:"mqtt_username"`
	MQTTPassword    string `yaml:"mqtt_password_hash"`
}

// Load reads and validates a registry file. The error, if any, is an Errors whose entries
// are *Error values naming the file, line and key.
func Load(path string) (*Registry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return Parse(path, data)
}

// Parse validates registry content; file names it in errors.
func Parse(file string, data []byte) (*Registry, error) {
	var doc fileDoc
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil { // decoded above, so this does not happen; keep the error anyway
		return nil, Errors{yamlError(file, err)}
	}
	r := &Registry{strict: doc.Strict, file: file, stamp: stampOf(data)}
	unquoted := unquotedPSKs(f, len(doc.Devices))
	for i, dd := range doc.Devices {
		at := func(k string) int {
			return lineOf(f, "$.devices["+strconv.Itoa(i)+"]."+k, "$.devices["+strconv.Itoa(i)+"]")
		}
		report := func(k, msg string) error {
			return &Error{File: file, Line: at(k), Key: "devices[" + strconv.Itoa(i) + "]." + k, Msg: msg}
		}
		d := Device{Tenant: dd.Tenant, Device: dd.Device, CoAPPSKIdentity: dd.CoAPPSKIdentity, MQTTUsername: dd.MQTTUsername,
			MQTTPasswordHash: PasswordHash(dd.MQTTPassword)}
		if dd.CoAPPSK != "" {
			// YAML turns an unquoted 0x1234 into the number 4660; the key must be quoted.
			if unquoted[i] {
				r.problems = append(r.problems, report("coap_psk", "must be a quoted string (\"0x...\" for hex)"))
				continue
			}
			psk, err := DecodePSK(dd.CoAPPSK)
			if err != nil {
				r.problems = append(r.problems, report("coap_psk", err.Error()))
				continue
			}
			d.CoAPPSK = psk
		}
		r.add(d, report)
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	return r, nil
}

func yamlError(file string, err error) *Error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
		k := strings.TrimSpace(ye.GetToken().Value)
		if k == "" {
			k = "(yaml)"
		}
		return &Error{File: file, Line: ye.GetToken().Position.Line, Key: k, Msg: ye.GetMessage()}
	}
	return &Error{File: file, Key: "(yaml)", Msg: err.Error()}
}

// unquotedPSKs marks the devices whose coap_psk is not a YAML string, walking the tree once.
func unquotedPSKs(f *ast.File, n int) []bool {
	out := make([]bool, n)
	if len(f.Docs) == 0 {
		return out
	}
	top, ok := f.Docs[0].Body.(ast.MapNode)
	if !ok {
		return out
	}
	for it := top.MapRange(); it.Next(); {
		if it.Key().String() != "devices" {
			continue
		}
		seq, ok := it.Value().(*ast.SequenceNode)
		if !ok {
			return out
		}
		for i, el := range seq.Values {
			m, ok := el.(ast.MapNode)
			if !ok || i >= n {
				continue
			}
			for dit := m.MapRange(); dit.Next(); {
				if dit.Key().String() == "coap_psk" && dit.Value().Type() != ast.StringType {
					out[i] = true
				}
			}
		}
	}
	return out
}

func nodeAt(f *ast.File, path string) ast.Node {
	p, err := yaml.PathString(path)
	if err != nil {
		return nil
	}
	n, err := p.FilterFile(f)
	if err != nil {
		return nil
	}
	return n
}

// lineOf is the line of the first of paths that exists in f, 0 if none does.
func lineOf(f *ast.File, paths ...string) int {
	for _, p := range paths {
		if n := nodeAt(f, p); n != nil && n.GetToken() != nil && n.GetToken().Position != nil {
			return n.GetToken().Position.Line
		}
	}
	return 0
}
