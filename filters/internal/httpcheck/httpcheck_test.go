package httpcheck

import "testing"

func TestName(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
		editErr  bool
	}{
		{"x-hello", "X-Hello", false, false},
		{"X_Weird!", "X_weird!", false, false},
		{"", "", true, true},
		{"X Hello", "", true, true},
		{"X:Hello", "", true, true},
		{"Héllo", "", true, true},
		{"content-length", "Content-Length", false, true},
		{"CONNECTION", "Connection", false, true},
	}
	for _, tt := range tests {
		got, err := Name(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("Name(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if _, err := EditableName(tt.in); (err != nil) != tt.editErr {
			t.Errorf("EditableName(%q) error = %v, want error %v", tt.in, err, tt.editErr)
		}
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
	}{
		{"plain value", false},
		{"tab\tok", false},
		{"", false},
		{"a\r\nX-Injected: 1", true},
		{"nul\x00", true},
		{"bell\x07", true},
		{"del\x7f", true},
	}
	for _, tt := range tests {
		if err := Value(tt.in); (err != nil) != tt.wantErr {
			t.Errorf("Value(%q) = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}
