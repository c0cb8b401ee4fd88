package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// field is one configuration key: a leaf of the Config struct reached through yaml tags.
// Nested structs are sections (their keys are prefixed), inline ones share their parent's
// prefix; anything else (scalars, lists, maps) is a leaf.
type field struct {
	key    string // dotted yaml path: mqtt.client_id
	v      reflect.Value
	secret bool
}

var durationType = reflect.TypeFor[time.Duration]()

// fields lists the keys of the struct cfg points to, in declaration order.
func fields(cfg any) []field {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: want a pointer to a struct, got %T", cfg)) // a wiring bug, not input
	}
	return walk(v.Elem(), "", nil)
}

func walk(v reflect.Value, prefix string, into []field) []field {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if strings.Contains(opts, "inline") {
			into = walk(fv, prefix, into)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeFor[time.Time]() {
			into = walk(fv, prefix+name+".", into)
			continue
		}
		into = append(into, field{key: prefix + name, v: fv})
	}
	return into
}

// FlagName is the command-line flag of a key: underscores become dashes
// (mqtt.client_id: --mqtt.client-id).
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// set parses s into the field the way a flag or environment variable gives it: scalars
// as Go writes them (5s, true, 42), lists comma-separated, anything else as YAML
// (FLEETMETER_HTTP_KEYS='[{key_file: /run/secrets/acme, tenant: acme}]').
func (f field) set(s string) error {
	v := f.v
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 500ms, 5s or 1m, got %q", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer of %d bits, got %q", v.Type().Bits(), s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an unsigned integer of %d bits, got %q", v.Type().Bits(), s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(x)
	default:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
			var list []string
			_ = StringList{&list}.Set(s)
			v.Set(reflect.ValueOf(list).Convert(v.Type()))
			return nil
		}
		p := reflect.New(v.Type())
		if err := yaml.UnmarshalWithOptions([]byte(s), p.Interface(), yaml.Strict()); err != nil {
			return fmt.Errorf("want YAML for %s: %s", v.Type(), yaml.FormatError(err, false, false))
		}
		v.Set(p.Elem())
	}
	return nil
}

// String is the value as set would take it back; secrets are never shown.
func (f field) String() string {
	if f.secret {
		if f.v.IsZero() {
			return ""
		}
		return "(secret)"
	}
	return show(f.v)
}

func show(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return fmt.Sprint(v.Interface())
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
		return strings.Join(v.Convert(reflect.TypeFor[[]string]()).Interface().([]string), ",")
	}
	if v.IsZero() {
		return ""
	}
	b, err := yaml.MarshalWithOptions(v.Interface(), yaml.Flow(true))
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return strings.TrimSpace(string(b))
}

// typeName is the placeholder a flag's usage shows for its value.
func (f field) typeName() string {
	if f.v.Type() == durationType {
		return "duration"
	}
	switch f.v.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	if f.v.Kind() == reflect.Slice && f.v.Type().Elem().Kind() == reflect.String {
		return "list"
	}
	return "yaml"
}

// flagValue binds a field to a flag.
type flagValue struct{ f field }

func (fv flagValue) String() string {
	if !fv.f.v.IsValid() {
		return ""
	}
	return fv.f.String()
}
func (fv flagValue) Set(s string) error { return fv.f.set(s) }
func (fv flagValue) IsBoolFlag() bool {
	return fv.f.v.IsValid() && fv.f.v.Kind() == reflect.Bool
}
