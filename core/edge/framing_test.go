package edge

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// parsedCtx reads raw through fasthttp's server-side request parser, as the engine's server does.
func parsedCtx(tb testing.TB, raw string) *fasthttp.RequestCtx {
	tb.Helper()
	var ctx fasthttp.RequestCtx
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	return &ctx
}

const typicalRequest = "POST /api/v1/items?limit=10 HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abc\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 17\r\n" +
	"Cookie: session=abcdef0123456789; theme=dark\r\n" +
	"X-Request-Id: 7b0c1c9e-4a5f-4a7e-9a51-0b1d2c3e4f50\r\n" +
	"\r\n"

func TestCheckFramingRawHeadersIsWireBytes(t *testing.T) {
	ctx := parsedCtx(t, typicalRequest)
	got := string(ctx.Request.Header.RawHeaders())
	want := typicalRequest[strings.Index(typicalRequest, "\r\n")+2:]
	if got != want {
		t.Errorf("RawHeaders = %q, want %q", got, want)
	}
	// Folded lines reach the raw copy unfolded, which is what makes obs-fold detectable.
	ctx = parsedCtx(t, "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n")
	if err := CheckFraming(ctx); !errors.Is(err, httpsyntax.ErrObsFold) {
		t.Errorf("CheckFraming(folded) = %v, want %v", err, httpsyntax.ErrObsFold)
	}
}

func TestCheckFramingAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	ctx := parsedCtx(t, typicalRequest)
	allocs := testing.AllocsPerRun(100, func() {
		if err := CheckFraming(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("CheckFraming allocs = %v, want 0", allocs)
	}
}

func BenchmarkCheckFraming(b *testing.B) {
	ctx := parsedCtx(b, typicalRequest)
	b.ReportAllocs()
	b.SetBytes(int64(len(ctx.Request.Header.RawHeaders())))
	for b.Loop() {
		if err := CheckFraming(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// unambiguous is an independent reference for what a framing-safe request looks like: it splits
// the raw header section with the standard library and applies the rules in their plainest form.
func unambiguous(raw []byte, http11 bool) bool {
	if len(raw) == 0 {
		return true // fasthttp keeps no raw copy of a section without fields
	}
	if !bytes.HasSuffix(raw, []byte("\r\n\r\n")) && string(raw) != "\r\n" {
		return false
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\r\n\r\n"), "\r\n")
	if string(raw) == "\r\n" {
		lines = nil
	}
	var cl, te int
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n\x00") {
			return false
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return false
		}
		switch strings.ToLower(name) {
		case "content-length":
			cl++
			v := strings.TrimPrefix(value, " ")
			if v == "" || strings.Trim(v, "0123456789") != "" {
				return false
			}
		case "transfer-encoding":
			te++
			if !strings.EqualFold(strings.TrimPrefix(value, " "), "chunked") {
				return false
			}
		}
	}
	return cl <= 1 && te <= 1 && !(cl == 1 && te == 1) && (te == 0 || http11)
}

func FuzzCheckFraming(f *testing.F) {
	f.Add("GET /canary HTTP/1.1\r\nHost: example.com\r\n\r\n")
	f.Add(typicalRequest)
	f.Add("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n")
	f.Add("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n")

	type verdict struct {
		raw    []byte
		http11 bool
		err    error
	}
	results := make(chan verdict, 1)
	addr := serve(f, func(ctx *fasthttp.RequestCtx) {
		err := CheckFraming(ctx)
		results <- verdict{append([]byte(nil), ctx.Request.Header.RawHeaders()...), ctx.Request.Header.IsHTTP11(), err}
		ctx.SetConnectionClose()
	})
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte(raw))
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		var buf [512]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				break
			}
		}
		select {
		case v := <-results:
			if v.err == nil && !unambiguous(v.raw, v.http11) {
				t.Errorf("accepted ambiguous framing: %q (raw %q)", raw, v.raw)
			}
		default:
			// fasthttp refused the request before the handler ran.
		}
	})
}

// serve runs a fasthttp server configured like the engine's on a loopback port and stops it
// when the test ends.
func serve(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: h, StreamRequestBody: true, ReadTimeout: 30 * time.Second, DisablePreParseMultipartForm: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		proto string
		want  error
	}{
		{"HTTP/1.1", nil},
		{"HTTP/1.0", nil},
		{"HTTP/9.9", ErrVersion},
		{"HTTP/1.2", ErrVersion},
		{"HTTP/2.0", ErrVersion},
		{"HTTP/0.9", ErrVersion},
	} {
		ctx := parsedCtx(t, "GET / "+tc.proto+"\r\nHost: a\r\n\r\n")
		if got := CheckVersion(&ctx.Request.Header); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.proto, got, tc.want)
		}
		if raceEnabled {
			continue
		}
		if n := testing.AllocsPerRun(10, func() { _ = CheckVersion(&ctx.Request.Header) }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", tc.proto, n)
		}
	}
}
