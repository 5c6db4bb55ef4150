package httpcheck

import (
	"strings"
	"testing"
)

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

// TestValueErrorQuotesNoValue: the reproduction, a bearer token with a stray newline, must not
// reach the log through the error.
func TestValueErrorQuotesNoValue(t *testing.T) {
	err := Value("Bearer upstream-s3cret\n")
	if err == nil {
		t.Fatal("newline accepted")
	}
	if got, want := err.Error(), "value contains CR, LF or NUL (byte 23 of 23)"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if err := Value("s3cret\x01"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("control byte error = %v, want one without the value", err)
	}
}
