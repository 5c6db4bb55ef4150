package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
)

// DecodeStrict decodes a generic config subtree (as parsed from YAML) into out, which must be a
// pointer. Unknown keys are errors; durations ("250ms") and sizes ("1MiB") are parsed. Field
// names match the `mapstructure` tag, or the lowercased field name.
func DecodeStrict(in any, out any) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		ErrorUnused: true,
		Result:      out,
		TagName:     "mapstructure",
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			sizeHook,
		),
	})
	if err != nil {
		return fmt.Errorf("build decoder: %w", err)
	}
	return d.Decode(in)
}

var sizeType = reflect.TypeOf(Size(0))

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
		return Size(v), nil
	case float64:
		if v != float64(int64(v)) {
			return nil, fmt.Errorf("size %v is not a whole number of bytes", v)
		}
		return Size(v), nil
	}
	return data, nil
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
