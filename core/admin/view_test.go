package admin

import (
	"encoding/json"
	"testing"
	"time"
)

type viewInner struct {
	TTL time.Duration `json:"ttl"`
}

type viewEmbedded struct {
	Promoted string `json:"promoted"`
}

type viewSample struct {
	viewEmbedded
	Name     string                   `json:"name"`
	Timeout  time.Duration            `json:"timeout"`
	Override *time.Duration           `json:"override,omitempty"`
	Unset    *time.Duration           `json:"unset,omitempty"`
	NilPtr   *time.Duration           `json:"nil_ptr"`
	Backoffs []time.Duration          `json:"backoffs"`
	ByName   map[string]time.Duration `json:"by_name"`
	Inner    *viewInner               `json:"inner"`
	At       time.Time                `json:"at"`
	Empty    string                   `json:"empty,omitempty"`
	Zero     viewInner                `json:"zero,omitzero"`
	Hidden   string                   `json:"-"`
	hidden   string
	Untagged int
	Bytes    []byte         `json:"bytes"`
	Any      map[string]any `json:"any"`
	NilList  []string       `json:"nil_list"`
	NilMap   map[int]string `json:"nil_map"`
	IntKeys  map[int]string `json:"int_keys"`
}

// TestViewDurations: durations become strings at any depth; everything else is written as
// encoding/json writes it, field order included.
func TestViewDurations(t *testing.T) {
	o := 250 * time.Millisecond
	in := viewSample{
		viewEmbedded: viewEmbedded{"p"},
		Name:         "x", Timeout: 30 * time.Second, Override: &o,
		Backoffs: []time.Duration{time.Millisecond, 90 * time.Second},
		ByName:   map[string]time.Duration{"a": time.Hour},
		Inner:    &viewInner{TTL: 0},
		At:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Hidden:   "h", hidden: "h", Untagged: 7,
		Bytes:   []byte("hi"),
		Any:     map[string]any{"n": 1, "d": time.Second, "nested": map[string]any{"d": 2 * time.Minute}},
		IntKeys: map[int]string{2: "b"},
	}
	got, err := json.Marshal(view(in))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"promoted":"p","name":"x","timeout":"30s","override":"250ms","nil_ptr":null,` +
		`"backoffs":["1ms","1m30s"],"by_name":{"a":"1h0m0s"},"inner":{"ttl":"0s"},` +
		`"at":"2026-01-02T03:04:05Z","Untagged":7,"bytes":"aGk=",` +
		`"any":{"d":"1s","n":1,"nested":{"d":"2m0s"}},"nil_list":null,"nil_map":null,"int_keys":{"2":"b"}}`
	if string(got) != want {
		t.Errorf("view =\n%s\nwant\n%s", got, want)
	}
	// A value without durations comes out exactly as encoding/json writes it.
	plain := struct {
		A int               `json:"a"`
		B []string          `json:"b,omitempty"`
		C map[string]string `json:"c"`
	}{A: 1, C: map[string]string{"k": "v"}}
	g, _ := json.Marshal(view(plain))
	w, _ := json.Marshal(plain)
	if string(g) != string(w) {
		t.Errorf("view(plain) = %s, encoding/json = %s", g, w)
	}
}
