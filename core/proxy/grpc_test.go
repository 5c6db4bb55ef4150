package proxy

import (
	"testing"
	"time"
)

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"", 0, false},
		{"1H", time.Hour, false},
		{"2M", 2 * time.Minute, false},
		{"3S", 3 * time.Second, false},
		{"40m", 40 * time.Millisecond, false},
		{"5u", 5 * time.Microsecond, false},
		{"6n", 6, false},
		{"0m", 1, false},        // expired already, still a deadline
		{"99999999H", 0, false}, // beyond a Duration: no deadline
		{"12345678S", 12345678 * time.Second, false},
		{"123456789S", 0, true}, // 9 digits
		{"S", 0, true},
		{"1", 0, true},
		{"1s", 0, true}, // units are case-sensitive
		{"-1S", 0, true},
		{"+1S", 0, true},
		{" 1S", 0, true},
		{"1 S", 0, true},
		{"1.5S", 0, true},
	} {
		got, err := ParseGRPCTimeout([]byte(tc.in))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%q: got %v, %v; want %v, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestGRPCStatusFromHTTP(t *testing.T) {
	for http, want := range map[int]int{
		200: GRPCUnknown, 400: GRPCInternal, 401: GRPCUnauthenticated, 403: GRPCPermissionDenied,
		404: GRPCUnimplemented, 405: GRPCUnimplemented, 408: GRPCDeadlineExceeded, 413: GRPCResourceExhausted,
		429: GRPCResourceExhausted, 431: GRPCResourceExhausted, 500: GRPCUnknown, 502: GRPCUnavailable,
		503: GRPCUnavailable, 504: GRPCDeadlineExceeded, 505: GRPCUnknown,
	} {
		if got := GRPCStatusFromHTTP(http); got != want {
			t.Errorf("HTTP %d: %d, want %d", http, got, want)
		}
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"plain text ~!":   "plain text ~!",
		"100%":            "100%25",
		"ünï":             "%C3%BCn%C3%AF",
		"line\r\nbreak\t": "line%0D%0Abreak%09",
	} {
		if got := EncodeGRPCMessage(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestGRPCContentTypes(t *testing.T) {
	for ct, want := range map[string][2]bool{ // IsGRPC, isGRPCWeb
		"application/grpc":                {true, false},
		"application/grpc+proto":          {true, false},
		"Application/GRPC;charset=utf-8":  {true, false},
		"application/grpcx":               {false, false},
		"application/grpc-web":            {false, true},
		"application/grpc-web+proto":      {false, true},
		"application/grpc-web-text":       {false, false},
		"application/grpc-web-text+proto": {false, false},
		"application/json":                {false, false},
		"":                                {false, false},
	} {
		if g, w := IsGRPC([]byte(ct)), isGRPCWeb([]byte(ct)); g != want[0] || w != want[1] {
			t.Errorf("%q: IsGRPC %v isGRPCWeb %v, want %v", ct, g, w, want)
		}
	}
}

func TestHealthStatus(t *testing.T) {
	frame := func(msg ...byte) []byte {
		return append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want uint64
		bad  bool
	}{
		{"serving", frame(0x08, 1), 1, false},
		{"not serving", frame(0x08, 2), 2, false},
		{"empty message is UNKNOWN", frame(), 0, false},
		{"unknown fields skipped", frame(0x12, 2, 'h', 'i', 0x08, 1, 0x18, 5), 1, false},
		{"compressed", append([]byte{1, 0, 0, 0, 2}, 0x08, 1), 0, true},
		{"no frame", nil, 0, true},
		{"short frame", []byte{0, 0, 0, 0, 9, 0x08, 1}, 0, true},
		{"trailing bytes", append(frame(0x08, 1), 0), 0, true},
		{"truncated varint", frame(0x08, 0x80), 0, true},
		{"length past the end", frame(0x12, 50, 'x'), 0, true},
		{"huge length", frame(0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 0, true},
		{"fixed64 wire type", frame(0x09, 1, 2, 3, 4, 5, 6, 7, 8), 0, true},
	} {
		got, err := healthStatus(tc.body)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d, bad=%v", tc.name, got, err, tc.want, tc.bad)
		}
	}
}

// BenchmarkIsGRPC: every HTTP/2 request's answer asks whether the call was gRPC.
func BenchmarkIsGRPC(b *testing.B) {
	cts := [][]byte{[]byte("application/json"), []byte("application/grpc+proto"), nil}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		IsGRPC(cts[i%len(cts)])
	}
}

// FuzzGRPCParsers: what an upstream or client sends the gateway's hand-written parsers never
// panics, and a timeout they accept is never negative.
func FuzzGRPCParsers(f *testing.F) {
	f.Add([]byte("10S"))
	f.Add([]byte{0, 0, 0, 0, 2, 0x08, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := ParseGRPCTimeout(b); err == nil && d < 0 {
			t.Fatalf("%q: negative %v", b, d)
		}
		_, _ = healthStatus(b)
	})
}
