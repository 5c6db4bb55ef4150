package proxy

import (
	"testing"
	"time"
)

// FuzzRetryAfter: any Retry-After value parses without panicking to a non-negative wait.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "99999999999999999999", "Fri, 02 Jan 2026 03:04:15 GMT", "x", "-1"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := retryAfter([]byte(s), now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("retryAfter(%q) = %s, %v", s, d, ok)
		}
	})
}

// FuzzParseTarget: configured targets and hash keys parse without panicking, and an accepted
// literal target round-trips.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]:443", "api.internal:8080", "srv:_http._tcp.x", "srv:", ":80", "h:0", "h:99999"} {
		f.Add(s, "header:X-User")
	}
	f.Fuzz(func(t *testing.T, target, hashOn string) {
		for _, resolve := range []bool{true, false} {
			s, err := parseTarget(target, 1, resolve)
			if err != nil {
				continue
			}
			if s.raw != target || (s.host == "" && !s.srv && s.port == "") {
				t.Fatalf("parseTarget(%q) = %+v", target, s)
			}
		}
		if k, name, err := parseHashOn(hashOn); err == nil && k != hashClientIP && len(name) == 0 {
			t.Fatalf("parseHashOn(%q) accepted an empty name", hashOn)
		}
	})
}
