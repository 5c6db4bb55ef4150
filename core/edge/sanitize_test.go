package edge

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// sanitizeCtx returns a request context holding typicalRequest from a peer, plus a pristine copy
// of its header to restore before each run.
func sanitizeCtx(tb testing.TB, raw string) (*fasthttp.RequestCtx, *fasthttp.RequestHeader) {
	tb.Helper()
	var req fasthttp.Request
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 40000}, nil)
	tmpl := &fasthttp.RequestHeader{}
	ctx.Request.Header.CopyTo(tmpl)
	return &ctx, tmpl
}

const forwardedRequest = "GET /x HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n" +
	"X-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: https\r\n\r\n"

func TestSanitizeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	trusted, err := ParseTrusted([]string{"192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		raw     string
		trusted *Trusted
	}{
		{"typical untrusted", typicalRequest, nil},
		{"forwarded untrusted", forwardedRequest, nil},
		{"forwarded trusted", forwardedRequest, trusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, tmpl := sanitizeCtx(t, tc.raw)
			allocs := testing.AllocsPerRun(100, func() {
				tmpl.CopyTo(&ctx.Request.Header)
				Sanitize(ctx, tc.trusted)
			})
			if allocs != 0 {
				t.Errorf("Sanitize allocs = %v, want 0", allocs)
			}
			if tc.trusted != nil {
				if got, want := string(ctx.Request.Header.Peek(hXFF)), "203.0.113.1, 192.0.2.10"; got != want {
					t.Errorf("X-Forwarded-For = %q, want %q", got, want)
				}
			}
		})
	}
}

func BenchmarkSanitize(b *testing.B) {
	ctx, tmpl := sanitizeCtx(b, typicalRequest)
	b.ReportAllocs()
	for b.Loop() {
		tmpl.CopyTo(&ctx.Request.Header)
		Sanitize(ctx, nil)
	}
}

func TestParseTrusted(t *testing.T) {
	tests := []struct {
		in      []string
		addr    string
		want    bool
		wantErr bool
	}{
		{[]string{"10.0.0.0/8"}, "10.1.2.3", true, false},
		{[]string{"10.0.0.0/8"}, "11.1.2.3", false, false},
		{[]string{"192.0.2.7"}, "192.0.2.7", true, false},
		{[]string{"::1"}, "::1", true, false},
		{[]string{"::ffff:10.0.0.0/104"}, "10.9.9.9", true, false},
		{[]string{"10.0.0.0/8"}, "::ffff:10.1.1.1", true, false},
		{nil, "127.0.0.1", false, false},
		{[]string{"nope"}, "", false, true},
		{[]string{"10.0.0.0/33"}, "", false, true},
	}
	for _, tc := range tests {
		tr, err := ParseTrusted(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseTrusted(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		ip := net.ParseIP(tc.addr)
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: ip}, nil)
		a, _ := netipFrom(ctx.RemoteIP())
		if got := tr.Contains(a); got != tc.want {
			t.Errorf("ParseTrusted(%q).Contains(%s) = %v, want %v", tc.in, tc.addr, got, tc.want)
		}
	}
}

func netipFrom(ip net.IP) (netip.Addr, bool) { return netip.AddrFromSlice(ip) }

// TestSanitizeAlwaysStrip checks that the gateway's own headers (consumer names) are removed
// from every request, a trusted peer's included, in every spelling a CGI-style server would
// read as the same field; and that mixed spellings of the untrusted list go too.
func TestSanitizeAlwaysStrip(t *testing.T) {
	trusted, err := ParseTrusted([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := trusted.SetAlwaysStrip([]string{"X-Consumer-Name", "X-Consumer-Groups"}); err != nil {
		t.Fatal(err)
	}
	head := "GET / HTTP/1.1\r\nHost: app.test\r\nX-Consumer-Name: root\r\nx_consumer_groups: admins\r\n" +
		"X-Consumer_Name: root\r\nX_CONSUMER-GROUPS: admins\r\nX-Real_IP: 6.6.6.6\r\nX-Keep: 1\r\n"
	for _, peer := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(192, 0, 2, 1)} {
		rc := edgeCtx(t, head)
		rc.SetRemoteAddr(&net.TCPAddr{IP: peer, Port: 1})
		Sanitize(rc, trusted)
		for k, v := range rc.Request.Header.All() {
			if n := strings.ToLower(strings.ReplaceAll(string(k), "_", "-")); strings.HasPrefix(n, "x-consumer") {
				t.Errorf("peer %v: %s: %s survived", peer, k, v)
			}
		}
		if got := rc.Request.Header.Peek("X-Keep"); string(got) != "1" {
			t.Errorf("peer %v: X-Keep = %q, want it kept", peer, got)
		}
		realIP := rc.Request.Header.Peek("X-Real_IP")
		if untrusted := !peer.Equal(net.IPv4(127, 0, 0, 1)); untrusted == (len(realIP) != 0) {
			t.Errorf("peer %v: X-Real_IP = %q (stripped only from untrusted peers)", peer, realIP)
		}
	}
}
