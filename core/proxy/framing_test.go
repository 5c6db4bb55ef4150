package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const canary = "GET /canary HTTP/1.1\r\nHost: example.com\r\n\r\n"

// TestFramingEndToEnd sends every ambiguous framing over raw TCP through the gateway stand-in.
// Whether fasthttp refuses the request itself or CheckFraming does, the client must get 400 and a
// closed connection, and the backend must not receive a complete request.
func TestFramingEndToEnd(t *testing.T) {
	be := newRawBackend(t, replyOK)
	u := newUpstream(t, Options{Targets: []string{be.addr()}})
	gw := gateway(t, nil, u.Forward)

	const h = "POST / HTTP/1.1\r\nHost: example.com\r\n"
	tests := []struct{ name, raw string }{
		{"cl and te", h + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"te and cl", h + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"duplicate cl equal", h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
		{"duplicate cl differ", h + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"cl list", h + "Content-Length: 5, 5\r\n\r\nhello"},
		{"cl non-numeric", h + "Content-Length: abc\r\n\r\n"},
		{"cl plus", h + "Content-Length: +5\r\n\r\nhello"},
		{"cl minus", h + "Content-Length: -5\r\n\r\nhello"},
		{"cl inner space", h + "Content-Length: 5 0\r\n\r\nhello"},
		{"cl two spaces", h + "Content-Length:  5\r\n\r\nhello"},
		{"cl tab", h + "Content-Length:\t5\r\n\r\nhello"},
		{"cl trailing space", h + "Content-Length: 5 \r\n\r\nhello"},
		{"cl hex", h + "Content-Length: 0x5\r\n\r\nhello"},
		{"te chunked identity", h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{"te identity", h + "Transfer-Encoding: identity\r\n\r\n"},
		{"te xchunked", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"te two spaces", h + "Transfer-Encoding:  chunked\r\n\r\n0\r\n\r\n"},
		{"te tab", h + "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n"},
		{"te trailing space", h + "Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n"},
		{"te duplicate", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"te on http/1.0", "POST / HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"space in name", h + "X Foo: bar\r\nContent-Length: 0\r\n\r\n"},
		{"non-token name", h + "X(Foo): bar\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold", h + "X-Foo: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"obs-fold tab", h + "X-Foo: a\r\n\tTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"},
		{"leading space first field", "POST / HTTP/1.1\r\n Host: example.com\r\nContent-Length: 0\r\n\r\n"},
		{"nul in value", h + "X-Foo: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		{"bare cr in value", h + "X-Foo: a\rb\r\nContent-Length: 0\r\n\r\n"},
		{"bare lf line end", h + "X-Foo: a\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"},
		{"bad chunk size", h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{"chunk size overflow", h + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n"},
		{"chunk size bad ext", h + "Transfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n"},
		{"chunk missing crlf", h + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := rawExchange(t, gw, tc.raw)
			if got, want := resp.StatusCode(), fasthttp.StatusBadRequest; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if !closed {
				t.Errorf("connection left open after rejecting %q", tc.raw)
			}
			if got, n := be.received(); n != 0 {
				t.Errorf("backend parsed %d complete requests: %q", n, got)
			}
			resp, _ = rawExchangeClose(t, gw, canary, false)
			if got, want := resp.StatusCode(), fasthttp.StatusOK; got != want {
				t.Errorf("canary status = %d, want %d", got, want)
			}
			// Drop the canary from the record so the next case starts clean.
			be.mu.Lock()
			be.complete = 0
			be.got.Reset()
			be.mu.Unlock()
		})
	}
}

// TestCheckFraming covers the rules directly on raw header sections, including the cases fasthttp
// would already refuse, so the check holds even if the server's parser becomes more lenient.
func TestCheckFraming(t *testing.T) {
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
			got := checkRaw([]byte(tc.raw), tc.http11)
			if !errors.Is(got, tc.want) && !(tc.want == nil && got == nil) {
				t.Errorf("checkRaw(%q) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

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
	if err := CheckFraming(ctx); !errors.Is(err, ErrObsFold) {
		t.Errorf("CheckFraming(folded) = %v, want %v", err, ErrObsFold)
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
	f.Add(canary)
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
