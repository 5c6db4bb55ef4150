package httpsyntax

import (
	"strings"
	"testing"
)

func TestIsToken(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"GET", true}, {"X-Api-Key", true}, {"!#$%&'*+-.^_`|~09azAZ", true},
		{"", false}, {"a b", false}, {"a:b", false}, {"a\x00", false}, {"é", false}, {"a/b", false},
		{"(x)", false}, {"a,b", false}, {`"q"`, false}, {"\t", false}, {"X-Hello", true},
		{"Bad Name", false}, {"x:y", false}, {"caf\xc3\xa9", false}, {"a\r\n", false},
	} {
		if got := IsToken(tc.s); got != tc.want {
			t.Errorf("IsToken(%q) = %v, want %v", tc.s, got, tc.want)
		}
		if got := IsToken([]byte(tc.s)); got != tc.want {
			t.Errorf("IsToken([]byte(%q)) = %v, want %v", tc.s, got, tc.want)
		}
	}
	// The alphabet is exactly RFC 9110's tchar.
	const tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		if got, want := IsTokenByte(byte(c)), strings.IndexByte(tchars, byte(c)) >= 0; got != want {
			t.Errorf("IsTokenByte(%#x) = %v, want %v", c, got, want)
		}
	}
}

func TestBadValueByte(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want int
	}{
		{"", -1}, {"Bearer abc", -1}, {"a\tb", -1}, {"caf\xc3\xa9", -1},
		{"a\rb", 1}, {"a\nb", 1}, {"\x00", 0}, {"ab\x0b", 2}, {"\x1b[31m", 0}, {"a\x7f", 1}, {"\x01", 0},
	} {
		if got := BadValueByte(tc.v); got != tc.want {
			t.Errorf("BadValueByte(%q) = %d, want %d", tc.v, got, tc.want)
		}
	}
}

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"Content-Length", "content-length", true}, {"TE", "te", true}, {"", "", true},
		{"a", "ab", false}, {"k", "\u212a", false}, {"[", "{", false}, {"@", "`", false},
	} {
		if got := EqualFold(tc.a, tc.b); got != tc.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := EqualFold([]byte(tc.a), tc.b); got != tc.want {
			t.Errorf("EqualFold([]byte(%q), %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestNextElement(t *testing.T) {
	var got []string
	for list := []byte(" keep-alive ,,X-A\t, close"); len(list) > 0; {
		var e []byte
		e, list = NextElement(list)
		got = append(got, string(e))
	}
	if want := []string{"keep-alive", "", "X-A", "close"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("elements = %q, want %q", got, want)
	}
}

func TestHopByHopAndFraming(t *testing.T) {
	for _, tc := range []struct {
		name       string
		hop, frame bool
	}{
		{"connection", true, true}, {"KEEP-ALIVE", true, true}, {"Proxy-Authorization", true, false},
		{"proxy-authenticate", true, false}, {"Proxy-Connection", true, true},
		{"te", true, true}, {"Transfer-Encoding", true, true}, {"upgrade", true, true},
		{"Content-Length", false, true}, {"Host", false, false}, {"X-Te", false, false},
	} {
		if got := IsHopByHop(tc.name); got != tc.hop {
			t.Errorf("IsHopByHop(%q) = %v, want %v", tc.name, got, tc.hop)
		}
		if got := IsFraming([]byte(tc.name)); got != tc.frame {
			t.Errorf("IsFraming(%q) = %v, want %v", tc.name, got, tc.frame)
		}
	}
}

func TestAllocateNothing(t *testing.T) {
	b := []byte("Transfer-Encoding")
	if n := testing.AllocsPerRun(100, func() {
		_ = IsToken(b) && EqualFold(b, "transfer-encoding") && IsFraming(b)
		_, _ = NextElement(b)
		_ = BadValueByte(b)
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
