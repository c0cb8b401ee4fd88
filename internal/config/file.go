package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// fileKey is a key found in the file and the line it is on.
type fileKey struct {
	path string
	line int
}

// decodeFile decodes the YAML file at path strictly into cfg. secretFiles are the
// <secret>_file keys the struct has no field for: they are taken out of the document
// before decoding and returned with their values (the files to read the secrets from).
// keys are every key of the document with its line, for naming the source of a value.
func decodeFile(path string, cfg any, secretFiles map[string]bool) (keys []fileKey, files map[string]string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	f, err := parser.ParseBytes(b, 0)
	if err != nil {
		return nil, nil, yamlError(path, err, nil)
	}
	files = map[string]string{}
	var body ast.Node
	for _, d := range f.Docs {
		if d.Body != nil {
			if body != nil {
				return nil, nil, fmt.Errorf("%s: one YAML document expected", path)
			}
			body = d.Body
		}
	}
	if body == nil {
		return nil, files, nil
	}
	var werr error
	keys = collect(body, "", &keys, func(m *ast.MappingNode, i int, key string) bool {
		if !secretFiles[key] {
			return false
		}
		s, ok := m.Values[i].Value.(*ast.StringNode)
		if !ok {
			werr = errors.Join(werr, fmt.Errorf("%s:%d: %s: want a file name", path, m.Values[i].Key.GetToken().Position.Line, key))
		} else {
			files[key] = s.Value
		}
		return true
	})
	if werr != nil {
		return nil, nil, werr
	}
	dec := yaml.NewDecoder(bytes.NewReader(nil), yaml.Strict())
	if err := dec.DecodeFromNode(body, cfg); err != nil {
		return nil, nil, yamlError(path, err, keys)
	}
	return keys, files, nil
}

// collect records the keys under n with their lines. drop is asked about each mapping
// entry; a true answer removes it from the document.
func collect(n ast.Node, prefix string, into *[]fileKey, drop func(*ast.MappingNode, int, string) bool) []fileKey {
	switch n := n.(type) {
	case *ast.MappingNode:
		kept := n.Values[:0]
		for i, mv := range n.Values {
			key := prefix + mv.Key.GetToken().Value
			if drop(n, i, key) {
				*into = append(*into, fileKey{key, mv.Key.GetToken().Position.Line})
				continue
			}
			kept = append(kept, mv)
			*into = append(*into, fileKey{key, mv.Key.GetToken().Position.Line})
			collect(mv.Value, key+".", into, drop)
		}
		n.Values = kept
	case *ast.MappingValueNode:
		key := prefix + n.Key.GetToken().Value
		*into = append(*into, fileKey{key, n.Key.GetToken().Position.Line})
		collect(n.Value, key+".", into, drop)
	case *ast.SequenceNode:
		base := prefix[:max(len(prefix)-1, 0)] // without the dot
		for i, v := range n.Values {
			collect(v, base+"["+strconv.Itoa(i)+"].", into, drop)
		}
	case *ast.TagNode:
		collect(n.Value, prefix, into, drop)
	case *ast.AnchorNode:
		collect(n.Value, prefix, into, drop)
	}
	return *into
}

// yamlError names file:line and, when the line holds one, the key.
func yamlError(path string, err error, keys []fileKey) error {
	var ye interface {
		GetToken() *token.Token
		GetMessage() string
	}
	if !errors.As(err, &ye) || ye.GetToken() == nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	line := ye.GetToken().Position.Line
	msg := ye.GetMessage()
	var uf *yaml.UnknownFieldError
	if errors.As(err, &uf) {
		msg = "unknown key"
	}
	key := ""
	for _, k := range keys {
		if k.line == line {
			key = k.path // the deepest key on the line
		}
	}
	if key == "" {
		return fmt.Errorf("%s:%d: %s", path, line, msg)
	}
	return fmt.Errorf("%s:%d: %s: %s", path, line, key, msg)
}
