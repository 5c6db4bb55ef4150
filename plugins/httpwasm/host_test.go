package httpwasm

import (
	"testing"

	"github.com/tetratelabs/wazero/api"
)

// TestFunctionsMatchTheABI: all 19 host functions of the http-handler ABI, with the
// specification's signatures (i32 everywhere; i64 for count_len, eof_len results).
func TestFunctionsMatchTheABI(t *testing.T) {
	i, l := api.ValueTypeI32, api.ValueTypeI64
	want := map[string]Signature{
		"enable_features":      {[]api.ValueType{i}, []api.ValueType{i}},
		"get_config":           {[]api.ValueType{i, i}, []api.ValueType{i}},
		"log_enabled":          {[]api.ValueType{i}, []api.ValueType{i}},
		"log":                  {[]api.ValueType{i, i, i}, nil},
		"get_method":           {[]api.ValueType{i, i}, []api.ValueType{i}},
		"set_method":           {[]api.ValueType{i, i}, nil},
		"get_uri":              {[]api.ValueType{i, i}, []api.ValueType{i}},
		"set_uri":              {[]api.ValueType{i, i}, nil},
		"get_protocol_version": {[]api.ValueType{i, i}, []api.ValueType{i}},
		"get_header_names":     {[]api.ValueType{i, i, i}, []api.ValueType{l}},
		"get_header_values":    {[]api.ValueType{i, i, i, i, i}, []api.ValueType{l}},
		"set_header_value":     {[]api.ValueType{i, i, i, i, i}, nil},
		"add_header_value":     {[]api.ValueType{i, i, i, i, i}, nil},
		"remove_header":        {[]api.ValueType{i, i, i}, nil},
		"read_body":            {[]api.ValueType{i, i, i}, []api.ValueType{l}},
		"write_body":           {[]api.ValueType{i, i, i}, nil},
		"get_status_code":      {nil, []api.ValueType{i}},
		"set_status_code":      {[]api.ValueType{i}, nil},
		"get_source_addr":      {[]api.ValueType{i, i}, []api.ValueType{i}},
	}
	got := Functions()
	if len(got) != 19 || len(want) != 19 {
		t.Fatalf("host provides %d functions, want 19", len(got))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if len(g.Params) != len(w.Params) || len(g.Results) != len(w.Results) {
			t.Errorf("%s: got %v -> %v, want %v -> %v", name, g.Params, g.Results, w.Params, w.Results)
			continue
		}
		for j := range w.Params {
			if g.Params[j] != w.Params[j] {
				t.Errorf("%s param %d: got %v, want %v", name, j, g.Params[j], w.Params[j])
			}
		}
		for j := range w.Results {
			if g.Results[j] != w.Results[j] {
				t.Errorf("%s result %d: got %v, want %v", name, j, g.Results[j], w.Results[j])
			}
		}
	}
}

func TestHasName(t *testing.T) {
	list := []byte("host\x00x-one\x00")
	for _, tt := range []struct {
		name string
		want bool
	}{{"Host", true}, {"X-ONE", true}, {"x-on", false}, {"", false}} {
		if got := hasName(list, []byte(tt.name)); got != tt.want {
			t.Errorf("hasName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
