package httpsyntax

import (
	"errors"
	"testing"
)

// TestCheckFraming covers the rules directly on raw header sections, including the cases fasthttp
// would already refuse, so the check holds even if the server's parser becomes more lenient.
func TestCheckHeaderSection(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		http11 bool
		want   error
	}{
		{"empty", "\r\n", true, nil},
		{"plain", "Host: a\r\nContent-Length: 10\r\n\r\n", true, nil},
		{"no space", "Content-Length:10\r\n\r\n", true, nil},
		{"chunked", "Transfer-Encoding: chunked\r\n\r\n", true, nil},
		{"chunked upper", "transfer-encoding: CHUNKED\r\n\r\n", true, nil},
		{"obs-text value", "X: caf\xc3\xa9\r\n\r\n", true, nil},
		{"tab in value", "X: a\tb\r\n\r\n", true, nil},
		{"cl te", "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", true, ErrLengthAndEncoding},
		{"dup cl", "Content-Length: 1\r\ncontent-length: 1\r\n\r\n", true, ErrDuplicateLength},
		{"dup te", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", true, ErrDuplicateEncoding},
		{"te 1.0", "Transfer-Encoding: chunked\r\n\r\n", false, ErrEncodingOnHTTP10},
		{"cl empty", "Content-Length: \r\n\r\n", true, ErrBadContentLength},
		{"cl long", "Content-Length: 1234567890123456789\r\n\r\n", true, ErrBadContentLength},
		{"te gzip", "Transfer-Encoding: gzip, chunked\r\n\r\n", true, ErrBadTransferCoding},
		{"fold", "X: a\r\n b\r\n\r\n", true, ErrObsFold},
		{"name space", "X Y: a\r\n\r\n", true, ErrBadFieldName},
		{"name empty", ": a\r\n\r\n", true, ErrBadFieldName},
		{"nul", "X: \x00\r\n\r\n", true, ErrBadFieldValue},
		{"del", "X: \x7f\r\n\r\n", true, ErrBadFieldValue},
		{"bare cr", "X: a\rb\r\n\r\n", true, ErrBadFieldValue},
		{"bare lf", "X: a\n\r\n", true, ErrBadLineEnding},
		{"truncated", "X: a", true, ErrTruncatedHeaderSec},
		{"no colon", "Xa\r\n\r\n", true, ErrBadFieldName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := CheckHeaderSection([]byte(tc.raw), tc.http11)
			if !errors.Is(got, tc.want) && !(tc.want == nil && got == nil) {
				t.Errorf("CheckHeaderSection(%q) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

// FuzzValueEnd: the word-at-a-time scan stops exactly where a byte-by-byte one does.
func FuzzValueEnd(f *testing.F) {
	for _, s := range []string{"", "text/plain\r\n", "a\tb\x7fc", "0123456789abcdef\x00", "caf\xc3\xa9 \x1f", "\xff\xfe\x80\x7e\x21\x20\x1f\x7f"} {
		f.Add([]byte(s), 0)
	}
	f.Fuzz(func(t *testing.T, b []byte, k int) {
		if k < 0 || k > len(b) {
			return
		}
		want := k
		for want < len(b) && !valueStop[b[want]] {
			want++
		}
		if got := valueEnd(b, k); got != want {
			t.Fatalf("valueEnd(%q, %d) = %d, want %d", b, k, got, want)
		}
	})
}

// BenchmarkCheckHeaderSection checks the header sections of a small proxied request and its
// response, as the edge and the proxy do once each per request.
func BenchmarkCheckHeaderSection(b *testing.B) {
	req := []byte("Host: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc\r\n\r\n")
	resp := []byte("Server: bench-backend\r\nDate: Mon, 07 Dec 2026 18:57:10 GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(req) + len(resp)))
	for b.Loop() {
		if _, err := CheckHeaderSection(req, true); err != nil {
			b.Fatal(err)
		}
		if _, err := CheckHeaderSection(resp, true); err != nil {
			b.Fatal(err)
		}
	}
}
