package weir

import (
	"reflect"
	"testing"
)

func TestPackNext(t *testing.T) {
	tests := []struct {
		next bool
		ctx  uint32
		want uint64
	}{
		{false, 0, 0},
		{false, 16, 0},
		{true, 0, 1},
		{true, 16, 16<<32 | 1},
		{true, 0xffffffff, 0xffffffff<<32 | 1},
	}
	for _, tt := range tests {
		if got := packNext(tt.next, tt.ctx); got != tt.want {
			t.Errorf("packNext(%v, %d) = %#x, want %#x", tt.next, tt.ctx, got, tt.want)
		}
	}
}

func TestSplitNUL(t *testing.T) {
	tests := []struct {
		count uint32
		raw   string
		want  []string
	}{
		{0, "", nil},
		{1, "a\x00", []string{"a"}},
		{2, "a=b\x00c=d\x00", []string{"a=b", "c=d"}},
		{2, "\x00x\x00", []string{"", "x"}},
		{1, "a\x00b\x00", []string{"a"}}, // count wins over extra data
	}
	for _, tt := range tests {
		if got := splitNUL(tt.count, []byte(tt.raw)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitNUL(%d, %q) = %q, want %q", tt.count, tt.raw, got, tt.want)
		}
	}
}
