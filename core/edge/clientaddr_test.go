package edge

import (
	"net"
	"net/netip"
	"testing"
)

// TestSanitizeClientAddr checks the client address Sanitize resolves: the peer's unless the
// peer is a trusted proxy, and then the nearest untrusted address in X-Forwarded-For, never
// one the client could choose by writing the field.
func TestSanitizeClientAddr(t *testing.T) {
	trusted, err := ParseTrusted([]string{"10.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		peer net.IP
		xff  string // "" sends none
		t    *Trusted
		want string
	}{
		{"untrusted peer, no header", net.IPv4(192, 0, 2, 1), "", trusted, "192.0.2.1"},
		{"untrusted peer ignores a spoofed header", net.IPv4(192, 0, 2, 1), "10.1.1.1", trusted, "192.0.2.1"},
		{"nobody trusted", net.IPv4(10, 0, 0, 1), "198.51.100.7", nil, "10.0.0.1"},
		{"trusted peer, client in header", net.IPv4(10, 0, 0, 1), "198.51.100.7", trusted, "198.51.100.7"},
		{"rightmost untrusted wins over a spoofed left part", net.IPv4(10, 0, 0, 1), "10.9.9.9, 203.0.113.5, 10.2.2.2", trusted, "203.0.113.5"},
		{"client spoofing a trusted address is still the client", net.IPv4(10, 0, 0, 1), "10.9.9.9", trusted, "10.9.9.9"},
		{"garbage stops at the proxy that passed it", net.IPv4(10, 0, 0, 1), "198.51.100.7, unknown, 10.2.2.2", trusted, "10.2.2.2"},
		{"empty elements are skipped", net.IPv4(10, 0, 0, 1), "198.51.100.7,, ", trusted, "198.51.100.7"},
		{"IPv6 client", net.IPv4(10, 0, 0, 1), "2001:db8::7", trusted, "2001:db8::7"},
		{"IPv4-mapped forms are unmapped", net.IPv4(10, 0, 0, 1), "::ffff:198.51.100.7", trusted, "198.51.100.7"},
		{"trusted IPv6 peer", net.ParseIP("::1"), "198.51.100.8", trusted, "198.51.100.8"},
		{"address with port is not an address", net.IPv4(10, 0, 0, 1), "198.51.100.7:443", trusted, "10.0.0.1"},
	}
	for _, tc := range tests {
		head := "GET / HTTP/1.1\r\nHost: app.test\r\n"
		if tc.xff != "" {
			head += "X-Forwarded-For: " + tc.xff + "\r\n"
		}
		rc := edgeCtx(t, head)
		rc.SetRemoteAddr(&net.TCPAddr{IP: tc.peer, Port: 1})
		if got := Sanitize(rc, tc.t); got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: client = %v, want %v", tc.name, got, tc.want)
		}
	}
}
