package filtertest

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ParseYAML parses src into the generic values the config loader hands filters
// (map[string]any, []any, string, int, float64, bool, nil), keeping key case.
func ParseYAML(src string) (any, error) {
	var v any
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		return nil, fmt.Errorf("parse yaml: %w", err)
	}
	return v, nil
}
