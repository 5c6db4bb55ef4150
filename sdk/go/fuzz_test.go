package weir

import (
	"bytes"
	"testing"
)

// FuzzSplitNUL feeds splitNUL whatever a host might write: it must never panic, never return
// more than count values, and the values it returns must be exactly the first NUL-terminated
// strings of raw.
func FuzzSplitNUL(f *testing.F) {
	f.Add(uint32(2), []byte("a=b\x00c=d\x00"))
	f.Add(uint32(3), []byte("a\x00"))
	f.Add(uint32(1), []byte("no terminator"))
	f.Fuzz(func(t *testing.T, count uint32, raw []byte) {
		count %= 64
		got := splitNUL(count, raw)
		if uint32(len(got)) > count {
			t.Fatalf("%d values for count %d", len(got), count)
		}
		want := bytes.Split(raw, []byte{0})
		want = want[:len(want)-1] // the part after the last NUL is not a value
		for i, v := range got {
			if v != string(want[i]) {
				t.Fatalf("value %d = %q, want %q", i, v, want[i])
			}
		}
	})
}
