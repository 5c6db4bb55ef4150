package edge

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/router"
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// edgeCtx builds a server-side request as fasthttp parses it off the wire.
func edgeCtx(t testing.TB, head string) *fasthttp.RequestCtx {
	t.Helper()
	var rc fasthttp.RequestCtx
	if err := rc.Request.Header.Read(bufioReader(head + "\r\n")); err != nil {
		t.Fatalf("parse %q: %v", head, err)
	}
	return &rc
}

func TestEdge(t *testing.T) {
	tests := []struct {
		head      string
		wantErr   error
		wantHost  string
		wantPath  string // "" with wantPathErr
		wantRaw   string
		wantQuery string
		pathErr   error
	}{
		{head: "GET /a/b?x=1 HTTP/1.1\r\nHost: app.test\r\n", wantHost: "app.test", wantPath: "/a/b", wantRaw: "/a/b", wantQuery: "x=1"},
		{head: "GET /admin/../public HTTP/1.1\r\nHost: app.test\r\n", wantHost: "app.test", wantPath: "/public", wantRaw: "/admin/../public"},
		{head: "GET /a%2fb HTTP/1.1\r\nHost: app.test\r\n", wantHost: "app.test", wantRaw: "/a%2fb", pathErr: router.ErrPathEncodedSep},
		{head: "GET http://other.test/x/../y?q HTTP/1.1\r\nHost: app.test\r\n", wantHost: "other.test", wantPath: "/y", wantRaw: "/x/../y", wantQuery: "q"},
		{head: "GET HTTP://other.test:8080 HTTP/1.1\r\nHost: app.test\r\n", wantHost: "other.test:8080", wantPath: "/", wantRaw: "/"},
		{head: "GET https://other.test?q=1 HTTP/1.1\r\nHost: app.test\r\n", wantHost: "other.test", wantPath: "/", wantRaw: "/", wantQuery: "q=1"},
		{head: "M-SEARCH /x HTTP/1.1\r\nHost: app.test\r\n", wantHost: "app.test", wantPath: "/x", wantRaw: "/x"},
		{head: "GET /x HTTP/1.1\r\nHost: app.test.\r\n", wantHost: "app.test.", wantPath: "/x", wantRaw: "/x"},
		{head: "GET /x HTTP/1.1\r\nHost: [::1]:80\r\n", wantHost: "[::1]:80", wantPath: "/x", wantRaw: "/x"},
		{head: "GET /x HTTP/1.1\r\nHost: 10.0.0.1:65535\r\n", wantHost: "10.0.0.1:65535", wantPath: "/x", wantRaw: "/x"},

		{head: "delete /x HTTP/1.1\r\nHost: app.test\r\n", wantErr: ErrBadMethod},
		{head: "DeLeTe /x HTTP/1.1\r\nHost: app.test\r\n", wantErr: ErrBadMethod},
		{head: "OPTIONS * HTTP/1.1\r\nHost: app.test\r\n", wantErr: ErrBadTarget},
		{head: "GET ftp://a/x HTTP/1.1\r\nHost: app.test\r\n", wantErr: ErrBadTarget},
		{head: "GET http://u:p@other.test/x HTTP/1.1\r\nHost: app.test\r\n", wantErr: ErrTargetUserinfo},
		{head: "GET http:///x HTTP/1.1\r\nHost: app.test\r\n", wantErr: ErrNoHost},
		{head: "GET /x HTTP/1.1\r\nHost: admin:admin@app.test\r\n", wantErr: ErrHostUserinfo},
		{head: "GET /x HTTP/1.1\r\nHost: app.test:1:2\r\n", wantErr: ErrBadPort},
		{head: "GET /x HTTP/1.1\r\nHost: app.test:\r\n", wantErr: ErrBadPort},
		{head: "GET /x HTTP/1.1\r\nHost: app.test:99999\r\n", wantErr: ErrBadPort},
		{head: "GET /x HTTP/1.1\r\nHost: app..test\r\n", wantErr: ErrBadHost},
		{head: "GET /x HTTP/1.1\r\nHost: .app.test\r\n", wantErr: ErrBadHost},
		{head: "GET /x HTTP/1.1\r\nHost: app.test..\r\n", wantErr: ErrBadHost},
		{head: "GET /x HTTP/1.1\r\nHost: [::1\r\n", wantErr: ErrBadHost},
		{head: "GET /x HTTP/1.1\r\nHost: [::1]x\r\n", wantErr: ErrBadHost},
		{head: "GET /x HTTP/1.1\r\nHost: a\\b\r\n", wantErr: ErrBadHost},
		{head: "GET /x HTTP/1.0\r\n", wantErr: ErrNoHost},
		{head: "GET /x#f HTTP/1.1\r\nHost: app.test\r\n", wantErr: router.ErrPathBadByte},
	}
	for _, tc := range tests {
		rc := edgeCtx(t, tc.head)
		tg, _, err := Edge(rc, nil)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%q: error %v, want %v", tc.head, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got := string(rc.Request.Header.Host()); got != tc.wantHost {
			t.Errorf("%q: host %q, want %q", tc.head, got, tc.wantHost)
		}
		if got := string(tg.Path); got != tc.wantPath || !errors.Is(tg.PathErr, tc.pathErr) {
			t.Errorf("%q: path %q (%v), want %q (%v)", tc.head, got, tg.PathErr, tc.wantPath, tc.pathErr)
		}
		if string(tg.Raw) != tc.wantRaw || string(tg.Query) != tc.wantQuery {
			t.Errorf("%q: raw %q query %q, want %q %q", tc.head, tg.Raw, tg.Query, tc.wantRaw, tc.wantQuery)
		}
	}
}

// TestEdgeAllocatesNothing: the edge runs on every request, clean or not.
func TestEdgeAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, head := range []string{
		"GET /api/v1/users/42?limit=10 HTTP/1.1\r\nHost: api.example.com\r\n",
		"GET /api//v1/./users/%7Ealice/../42?limit=10 HTTP/1.1\r\nHost: api.example.com\r\n",
	} {
		rc := edgeCtx(t, head)
		raw := append([]byte(nil), rc.Request.Header.RequestURI()...)
		var norm, target []byte
		run := func() {
			rc.Request.Header.SetRequestURIBytes(raw)
			var tg Target
			tg, norm, _ = Edge(rc, norm)
			target = SetTarget(rc, &tg, tg.Path, target)
			_ = rc.Path()
		}
		run()
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Errorf("%q: %v allocations, want 0", head, n)
		}
	}
}

func BenchmarkEdge(b *testing.B) {
	rc := edgeCtx(b, "GET /api/v1/users/42?limit=10 HTTP/1.1\r\nHost: api.example.com\r\n")
	var norm, target []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var tg Target
		tg, norm, _ = Edge(rc, norm)
		target = SetTarget(rc, &tg, tg.Path, target)
	}
}

func TestSanitizeStripsClientIdentity(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: app.test\r\nX-Real-IP: 1.2.3.4\r\ntrue-client-ip: 1.2.3.4\r\nCF-Connecting-IP: 1.2.3.4\r\n" +
		"X-Client-IP: 1.2.3.4\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Forwarded-Prefix: /admin\r\nX-Keep: 1\r\n" +
		"x_real_ip: 5.6.7.8\r\nX_ORIGINAL_URL: /admin\r\n"
	// The underscore spellings are the same fields to CGI-style servers (PHP, WSGI).
	all := []string{"X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "X-Client-IP", "X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Prefix",
		"x_real_ip", "X_ORIGINAL_URL"}
	custom, err := ParseTrusted(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := custom.SetStripHeaders([]string{"X-Keep"}); err != nil {
		t.Fatal(err)
	}
	trusted, err := ParseTrusted([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		t        *Trusted
		gone     []string
		kept     []string
		fromPeer net.IP
	}{
		{"default list", nil, all, []string{"X-Keep"}, net.IPv4(192, 0, 2, 1)},
		{"custom list", custom, []string{"X-Keep"}, all, net.IPv4(192, 0, 2, 1)},
		{"trusted peer keeps them", trusted, nil, append(all, "X-Keep"), net.IPv4(127, 0, 0, 1)},
	}
	for _, tc := range tests {
		rc := edgeCtx(t, head)
		rc.SetRemoteAddr(&net.TCPAddr{IP: tc.fromPeer, Port: 1})
		Sanitize(rc, tc.t)
		for _, n := range tc.gone {
			if v := rc.Request.Header.Peek(n); len(v) != 0 {
				t.Errorf("%s: %s = %q survived", tc.name, n, v)
			}
		}
		for _, n := range tc.kept {
			if v := rc.Request.Header.Peek(n); len(v) == 0 {
				t.Errorf("%s: %s was removed", tc.name, n)
			}
		}
	}
	if err := custom.SetStripHeaders([]string{"Bad Name"}); err == nil {
		t.Error("SetStripHeaders accepted a name with a space")
	}
}
