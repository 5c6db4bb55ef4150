package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// DecodeStrict decodes a generic config subtree (as parsed from YAML) into out, which must be a
// pointer. Unknown keys are errors; durations ("250ms") and sizes ("1MiB") are parsed. Field
// names match the `mapstructure` tag, or the lowercased field name, ignoring case.
//
// The error, if any, joins one *Error per problem with Path set relative to in (for example
// `window: invalid duration "10"`), so a filter factory can return it as is and the caller adds
// the file, route and filter.
func DecodeStrict(in any, out any) error {
	return decodeInto(in, out, "")
}

// decodeInto is DecodeStrict with a path prefix for the produced errors.
func decodeInto(in any, out any, prefix string) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		ErrorUnused: true,
		Result:      out,
		RootName:    prefix,
		TagName:     "mapstructure",
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			sizeHook,
			scalarFromStringHook,
			stringToSliceHook,
		),
	})
	if err != nil {
		return fmt.Errorf("build decoder: %w", err)
	}
	if err := d.Decode(in); err != nil {
		return humanize(err, prefix, rootTypeName(out))
	}
	return nil
}

// humanize turns mapstructure's errors (quoted Go field paths, Go type names, several unknown
// keys in one message) into one *Error per problem, each naming the key path as written in YAML.
// rootType is how mapstructure names the root when it has no name, which is dropped.
func humanize(err error, prefix, rootType string) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		de, ok := e.(*mapstructure.DecodeError)
		if !ok {
			if j, ok := e.(interface{ Unwrap() []error }); ok {
				for _, x := range j.Unwrap() {
					walk(x)
				}
				return
			}
			// mapstructure wraps several errors in a plain fmt.Errorf; look through it.
			if inner := errors.Unwrap(e); inner != nil && errors.As(inner, new(*mapstructure.DecodeError)) {
				walk(inner)
				return
			}
			out = append(out, &Error{Path: prefix, Err: friendly(e)})
			return
		}
		path := de.Name()
		if path == rootType {
			path = prefix
		}
		inner := de.Unwrap()
		if keys, ok := strings.CutPrefix(inner.Error(), "has invalid keys: "); ok {
			for _, k := range strings.Split(keys, ", ") {
				out = append(out, &Error{Path: path, Err: fmt.Errorf("unknown key %q", k), lineAt: joinPath(path, k)})
			}
			return
		}
		out = append(out, &Error{Path: path, Err: friendly(inner)})
	}
	walk(err)
	return errors.Join(out...)
}

// friendly rewrites a mapstructure leaf error in YAML terms rather than Go type names.
func friendly(err error) error {
	var ute *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ute) {
		return fmt.Errorf("expected %s, got %s", kindName(ute.Expected.Type()), yamlKind(ute.Value))
	}
	var pe *mapstructure.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("expected %s, got %s", kindName(pe.Expected.Type()), yamlKind(pe.Value))
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "expected a map or struct, got "); ok {
		return fmt.Errorf("expected a mapping, got %s", strings.Trim(rest, `"`))
	}
	if strings.HasPrefix(msg, "source data must be an array or slice") {
		return errors.New("expected a list")
	}
	return err
}

// kindName names a Go destination type the way a config author thinks of it.
func kindName(t reflect.Type) string {
	switch t {
	case durationType:
		return "a duration such as 30s"
	case sizeType:
		return "a size such as 10MiB"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return t.String()
}

// yamlKind describes a decoded YAML value for an error message.
func yamlKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("%q", x)
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return reflect.TypeOf(v).String()
}

// rootTypeName returns the type name mapstructure uses for the root of out.
func rootTypeName(out any) string {
	t := reflect.TypeOf(out)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return ""
	}
	return t.String()
}

// joinPath joins a prefix and a mapstructure field path into one YAML-style key path.
func joinPath(prefix, name string) string {
	switch {
	case name == "":
		return prefix
	case prefix == "":
		return name
	case strings.HasPrefix(name, "["):
		return prefix + name
	}
	return prefix + "." + name
}

var (
	sizeType     = reflect.TypeOf(Size(0))
	durationType = reflect.TypeOf(time.Duration(0))
)

// durationHook parses "250ms" and the like. A bare number other than 0 is rejected rather than
// read as nanoseconds: `timeout: 30` is far more likely to mean seconds than 30ns.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (want a number with a unit: 500ms, 30s, 5m, 1h)", v)
		}
		return d, nil
	case int, int64, uint64, float64:
		if fmt.Sprint(v) == "0" {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("duration %v has no unit (write %vs, %vms, …)", v, v, v)
	}
	return data, nil
}

func sizeHook(from, to reflect.Type, data any) (any, error) {
	if to != sizeType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseSize(v)
	case int:
		return Size(v), nil
	case int64:
		return Size(v), nil
	case uint64:
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("size %d is too large", v)
		}
		return Size(v), nil
	case float64:
		if v != math.Trunc(v) || v > math.MaxInt64 || v < math.MinInt64 {
			return nil, fmt.Errorf("size %v is not a whole number of bytes", v)
		}
		return Size(v), nil
	}
	return data, nil
}

// scalarFromStringHook lets environment overrides, which are always strings, fill integer and
// boolean fields. YAML scalars already arrive typed and are untouched.
func scalarFromStringHook(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || to == durationType || to == sizeType {
		return data, nil
	}
	s = strings.TrimSpace(s)
	switch to.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid integer %q", s)
		}
		return n, nil
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		return b, nil
	}
	return data, nil
}

// stringToSliceHook lets a comma-separated string (an environment override such as
// WEIR_SERVER_TRUSTED_PROXIES="10.0.0.0/8,192.168.0.0/16") fill a list of strings.
func stringToSliceHook(from, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses "1048576", "512KiB", "10MiB", "1GiB", "1MB" or "100B".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (want bytes, or a number with KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return Size(n * mult), nil
}

// String writes the size with the largest binary unit that divides it exactly, so that it
// round-trips through ParseSize.
func (s Size) String() string {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// sortedKeys returns m's keys in order, so that errors come out in a stable order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
