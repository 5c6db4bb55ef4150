package admin

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// view returns v as plain JSON values, the way encoding/json would write it (json tags,
// omitempty, Marshaler types), except that a time.Duration becomes its string ("30s", "1m30s"),
// as durations are written in the config file. The config types keep time.Duration for
// decoding, and encoding/json would write it as integer nanoseconds, which nobody reads.
// Struct fields keep their declaration order.
func view(v any) any { return viewValue(reflect.ValueOf(v)) }

var (
	durationType  = reflect.TypeFor[time.Duration]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
)

func viewValue(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	t := v.Type()
	if t == durationType {
		return time.Duration(v.Int()).String()
	}
	if t.Implements(marshalerType) && (t.Kind() != reflect.Pointer || !v.IsNil()) {
		// time.Time and the like write themselves.
		b, err := v.Interface().(json.Marshaler).MarshalJSON()
		if err != nil {
			return nil
		}
		return json.RawMessage(b)
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return viewValue(v.Elem())
	case reflect.Struct:
		obj := object{}
		addFields(&obj, v)
		return obj
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			m[mapKey(it.Key())] = viewValue(it.Value())
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			return v.Interface() // base64, as encoding/json writes bytes
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = viewValue(v.Index(i))
		}
		return out
	}
	return v.Interface()
}

// addFields appends the JSON fields of struct v to obj; an embedded struct without a name of
// its own gives its fields to the outer one, as in encoding/json.
func addFields(obj *object, v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			addFields(obj, v.Field(i))
			continue
		}
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		if hasOpt(opts, "omitempty") && emptyValue(fv) || hasOpt(opts, "omitzero") && fv.IsZero() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		*obj = append(*obj, field{name, viewValue(fv)})
	}
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// emptyValue is encoding/json's omitempty test.
func emptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// mapKey writes a map key as encoding/json does for the key kinds configs use.
func mapKey(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return k.String()
	}
	b, _ := json.Marshal(k.Interface())
	return strings.Trim(string(b), `"`)
}

// object is a JSON object whose fields keep their order.
type object []field

type field struct {
	name  string
	value any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
