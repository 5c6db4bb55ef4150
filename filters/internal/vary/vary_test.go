package vary

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func TestAdd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		have  []string
		token string
		want  string
	}{
		{"none", nil, "Origin", "Origin"},
		{"appended", []string{"Accept-Encoding"}, "Origin", "Accept-Encoding, Origin"},
		{"already there in another case", []string{"accept-encoding, origin"}, "Origin", "accept-encoding, origin"},
		{"star covers it", []string{"*"}, "Origin", "*"},
		{"fields merged", []string{"Cookie", " Accept-Language "}, "Origin", "Cookie, Accept-Language, Origin"},
		{"empty field skipped", []string{"", "Cookie"}, "Origin", "Cookie, Origin"},
	} {
		var h fasthttp.ResponseHeader
		for _, v := range tc.have {
			h.Add("Vary", v)
		}
		Add(&h, []byte(tc.token))
		all := h.PeekAll("Vary")
		if len(all) != 1 || string(all[0]) != tc.want {
			t.Errorf("%s: Vary = %q, want one field %q", tc.name, all, tc.want)
		}
	}
}

func TestAddAllocatesNothing(t *testing.T) {
	var h fasthttp.ResponseHeader
	tok := []byte("Origin")
	if n := testing.AllocsPerRun(100, func() {
		h.Reset()
		h.Set("Vary", "Accept-Encoding")
		Add(&h, tok)
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
