package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
)

// echoBackend is a fasthttp upstream that reports back the request header it received.
func echoBackend(t testing.TB) string {
	return serve(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Got-Headers", strings.ReplaceAll(ctx.Request.Header.String(), "\r\n", "|"))
		ctx.SetBodyString("hello")
	})
}

func gotHeaders(resp *fasthttp.Response) string { return string(resp.Header.Peek("X-Got-Headers")) }

func TestHopByHopStripped(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"canonical", "Connection: X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\n"},
		// The pool keeps the upstream's spelling of names; none of them may get through.
		{"lower case", "connection: x-secret\r\nx-secret: s\r\nkeep-alive: timeout=5\r\nproxy-authenticate: Basic\r\nupgrade: h2c\r\ntrailer: X-T\r\n"},
		{"mixed case", "CONNECTION: X-SECRET, Keep-ALIVE\r\nx-Secret: s\r\nKEEP-alive: timeout=5\r\nPROXY-AUTHENTICATE: Basic\r\nuPgRaDe: h2c\r\nTRAILER: X-T\r\n"},
		{"two connection fields", "Connection: keep-alive\r\nconnection: x-secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) { testHopByHopStripped(t, tc.head) })
	}
}

func testHopByHopStripped(t *testing.T, head string) {
	be := newRawBackend(t, func(req *fasthttp.Request, w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"+head+"X-Kept: k\r\n\r\nok")
	})
	u := newUpstream(t, Options{Targets: []string{be.addr()}, Via: "weir"})
	gw := gateway(t, nil, u.Forward)

	resp, _ := rawExchangeClose(t, gw, "GET /p HTTP/1.1\r\nHost: example.com\r\n"+
		"Connection: keep-alive, X-Drop-Me, Content-Length, Host\r\nX-Drop-Me: 1\r\nKeep-Alive: 300\r\n"+
		"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nTrailer: X-T\r\n"+
		"Upgrade: websocket\r\nX-Keep: yes\r\n\r\n", false)
	if got, want := resp.StatusCode(), 200; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	sent, _ := be.received()
	lower := strings.ToLower(sent)
	for _, h := range []string{"connection:", "x-drop-me", "keep-alive:", "proxy-connection", "proxy-authorization",
		"\r\nte:", "trailer:", "upgrade:"} {
		if strings.Contains(lower, h) {
			t.Errorf("upstream received %q in %q", h, sent)
		}
	}
	for _, h := range []string{"X-Keep: yes", "Host: example.com", "Via: 1.1 weir", "X-Forwarded-For: 127.0.0.1"} {
		if !strings.Contains(sent, h) {
			t.Errorf("upstream did not receive %q in %q", h, sent)
		}
	}
	for k, v := range resp.Header.All() {
		for _, h := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate", "Upgrade", "Trailer"} {
			if strings.EqualFold(string(k), h) {
				t.Errorf("client received %s: %s", k, v)
			}
		}
	}
	if got, want := string(resp.Header.Peek("Via")), "1.1 weir"; got != want {
		t.Errorf("response Via = %q, want %q", got, want)
	}
	if got, want := string(resp.Header.Peek("X-Kept")), "k"; got != want {
		t.Errorf("response X-Kept = %q, want %q", got, want)
	}
}

func TestForwardedHeaders(t *testing.T) {
	loopback, err := edge.ParseTrusted([]string{"127.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := edge.ParseTrusted([]string{"10.0.0.0/8", "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	const in = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.9\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nX-Forwarded-Port: 443\r\nForwarded: for=1.2.3.4\r\n\r\n"
	tests := []struct {
		name    string
		trusted *edge.Trusted
		raw     string
		want    []string
		notWant []string
	}{
		{"untrusted", other, in,
			[]string{"X-Forwarded-For: 127.0.0.1|", "X-Forwarded-Proto: http|", "X-Forwarded-Host: example.com|"},
			[]string{"203.0.113.9", "https", "public.example", "X-Forwarded-Port", "Forwarded: "}},
		{"nil trusts nobody", nil, in,
			[]string{"X-Forwarded-For: 127.0.0.1|"}, []string{"203.0.113.9"}},
		{"trusted", loopback, in,
			[]string{"X-Forwarded-For: 203.0.113.9, 127.0.0.1|", "X-Forwarded-Proto: https|",
				"X-Forwarded-Host: public.example|", "X-Forwarded-Port: 443|", "Forwarded: for=1.2.3.4|"}, nil},
		{"trusted without headers", loopback, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
			[]string{"X-Forwarded-For: 127.0.0.1|", "X-Forwarded-Proto: http|", "X-Forwarded-Host: example.com|"}, nil},
		{"trusted multiple xff lines", loopback,
			"GET / HTTP/1.1\r\nHost: e\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n\r\n",
			[]string{"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1|"}, nil},
	}
	be := echoBackend(t)
	u := newUpstream(t, Options{Targets: []string{be}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := gateway(t, tc.trusted, u.Forward)
			resp, _ := rawExchangeClose(t, gw, tc.raw, false)
			got := gotHeaders(resp) + "|"
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("upstream headers %q lack %q", got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("upstream headers %q contain %q", got, w)
				}
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	const n = 3
	var mu sync.Mutex
	counts := map[string]int{}
	var targets []string
	for i := 0; i < n; i++ {
		name := fmt.Sprint("b", i)
		targets = append(targets, serve(t, func(ctx *fasthttp.RequestCtx) {
			mu.Lock()
			counts[name]++
			mu.Unlock()
		}))
	}
	u := newUpstream(t, Options{Targets: targets})
	gw := gateway(t, nil, u.Forward)
	seen := map[string]int{}
	for i := 0; i < 3*n; i++ {
		resp := do(t, gw, nil)
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d", resp.StatusCode())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < n; i++ {
		seen[fmt.Sprint("b", i)] = 3
	}
	for k, want := range seen {
		if got := counts[k]; got != want {
			t.Errorf("backend %s got %d requests, want %d (all: %v)", k, got, want, counts)
		}
	}
	if got, want := u.Targets(), targets; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Targets() = %v, want %v", got, want)
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

func TestErrorMapping(t *testing.T) {
	slow := newRawBackend(t, func(_ *fasthttp.Request, w io.Writer) {
		time.Sleep(2 * time.Second)
		replyOK(nil, w)
	})
	raw := func(resp string) string {
		return newRawBackend(t, func(_ *fasthttp.Request, w io.Writer) {
			_, _ = io.WriteString(w, resp)
			// One response per connection, so a body shorter than announced ends at EOF.
			_ = w.(net.Conn).Close()
		}).addr()
	}
	// A backend that holds its single connection busy, so a second request finds no free one.
	hold := make(chan struct{})
	busy := newRawBackend(t, func(_ *fasthttp.Request, w io.Writer) {
		<-hold
	})
	// Registered after the backend so it runs first: the backend's close waits for its handlers.
	t.Cleanup(func() { close(hold) })
	busyUp := newUpstream(t, Options{Targets: []string{busy.addr()}, MaxConns: 1, MaxConnWait: 50 * time.Millisecond, Timeout: 30 * time.Second})
	go func() {
		// Occupies the only connection until the test ends.
		var c filter.Ctx
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI("http://x/")
		rc.Request.Header.SetHost("x")
		c.Reset(&rc, "hold")
		busyUp.Forward(&c)
	}()
	for busyUp.cur.Load().members[0].hc.ConnsCount() == 0 {
		time.Sleep(5 * time.Millisecond)
	}

	tests := []struct {
		name     string
		o        Options
		want     int
		wantBody string
	}{
		{"refused", Options{Targets: []string{closedAddr(t)}}, 502, ""},
		{"all refused", Options{Targets: []string{closedAddr(t), closedAddr(t)}}, 502, ""},
		{"timeout", Options{Targets: []string{slow.addr()}, Timeout: 200 * time.Millisecond}, 504, ""},
		{"bad status line", Options{Targets: []string{raw("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n")}}, 502, ""},
		{"not http", Options{Targets: []string{raw("SSH-2.0-OpenSSH\r\n\r\n")}}, 502, ""},
		{"cl and te", Options{Targets: []string{raw("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")}}, 502, ""},
		{"duplicate cl", Options{Targets: []string{raw("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")}}, 502, ""},
		{"short body", Options{Targets: []string{raw("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc")}}, 502, ""},
		{"obs-fold", Options{Targets: []string{raw("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n")}}, 502, ""},
		{"ok", Options{Targets: []string{raw("HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc")}}, 201, "abc"},
		{"ok 1xx skipped", Options{Targets: []string{raw("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")}}, 200, "z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, tc.o)
			gw := gateway(t, nil, u.Forward)
			resp := do(t, gw, nil)
			if got := resp.StatusCode(); got != tc.want {
				t.Errorf("status = %d, want %d (body %q)", got, tc.want, resp.Body())
			}
			if tc.wantBody != "" {
				if got := string(resp.Body()); got != tc.wantBody {
					t.Errorf("body = %q, want %q", got, tc.wantBody)
				}
			} else if got, want := string(resp.Body()), filter.ErrorBody(tc.want); got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
		})
	}
	t.Run("no free connection", func(t *testing.T) {
		gw := gateway(t, nil, busyUp.Forward)
		if got, want := do(t, gw, nil).StatusCode(), 503; got != want {
			t.Errorf("status = %d, want %d", got, want)
		}
	})
	t.Run("closed upstream", func(t *testing.T) {
		u := newUpstream(t, Options{Targets: []string{slow.addr()}})
		_ = u.Close()
		gw := gateway(t, nil, u.Forward)
		if got, want := do(t, gw, nil).StatusCode(), 503; got != want {
			t.Errorf("status = %d, want %d", got, want)
		}
	})
}

// TestStreamedResponseBrokenMidway: once part of a large body was sent, an upstream failure can
// only be signalled by closing the client connection before the body is complete.
func TestStreamedResponseBrokenMidway(t *testing.T) {
	be := newRawBackend(t, func(_ *fasthttp.Request, w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n")
		_, _ = w.Write(make([]byte, 200000))
		if c, ok := w.(net.Conn); ok {
			_ = c.Close()
		}
	})
	u := newUpstream(t, Options{Targets: []string{be.addr()}})
	gw := gateway(t, nil, u.Forward)
	c, err := net.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, canary)
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (the connection should be closed, not time out)", err)
	}
	if !strings.HasPrefix(string(all), "HTTP/1.1 200 OK") {
		t.Fatalf("response starts %q", all[:min(len(all), 40)])
	}
	if len(all) >= 1000000 {
		t.Errorf("client got %d bytes, want a truncated body", len(all))
	}
}

func TestPathSentAsIs(t *testing.T) {
	be := newRawBackend(t, replyOK)
	u := newUpstream(t, Options{Targets: []string{be.addr()}})
	gw := gateway(t, nil, func(c *filter.Ctx) {
		if string(c.URI().PathOriginal()) == "/rewrite" {
			c.URI().SetPath("/new//x/../y")
		}
		u.Forward(c)
	})
	for _, tc := range []struct{ in, want string }{
		{"/a//b/../c?q=1%2F", "GET /a//b/../c?q=1%2F HTTP/1.1"},
		{"/rewrite", "GET /new//x/../y HTTP/1.1"},
	} {
		be.mu.Lock()
		be.got.Reset()
		be.mu.Unlock()
		resp, _ := rawExchangeClose(t, gw, "GET "+tc.in+" HTTP/1.1\r\nHost: e\r\n\r\n", false)
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d", resp.StatusCode())
		}
		if got, _ := be.received(); !strings.HasPrefix(got, tc.want+"\r\n") {
			t.Errorf("upstream request line for %q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHTTP10AndHead(t *testing.T) {
	be := newRawBackend(t, func(req *fasthttp.Request, w io.Writer) {
		_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
		if !req.Header.IsHead() {
			_, _ = w.Write(make([]byte, 1234))
		}
	})
	u := newUpstream(t, Options{Targets: []string{be.addr()}})
	gw := gateway(t, nil, u.Forward)
	resp, _ := rawExchangeClose(t, gw, "HEAD / HTTP/1.1\r\nHost: e\r\n\r\n", false)
	if got, want := resp.Header.ContentLength(), 1234; got != want {
		t.Errorf("HEAD Content-Length = %d, want %d", got, want)
	}
	resp, closed := rawExchange(t, gw, "GET / HTTP/1.0\r\nHost: e\r\n\r\n")
	if got, want := len(resp.Body()), 1234; got != want {
		t.Errorf("HTTP/1.0 body = %d bytes, want %d", got, want)
	}
	if !closed {
		t.Errorf("HTTP/1.0 connection without keep-alive left open")
	}
	if got, _ := be.received(); !strings.Contains(got, "GET / HTTP/1.1\r\n") || strings.Contains(got, "Connection: close") {
		t.Errorf("upstream request = %q, want HTTP/1.1 without Connection: close", got)
	}
}

func TestEcho(t *testing.T) {
	gw := gateway(t, nil, Echo)
	resp := do(t, gw, func(req *fasthttp.Request) {
		req.SetRequestURI("http://" + gw + "/p/a?x=1")
		req.Header.SetMethod("POST")
		req.Header.Set("X-B", "2")
		req.Header.Set("X-A", "1")
		req.SetBodyString("hello")
	})
	if got, want := string(resp.Header.ContentType()), "application/json"; got != want {
		t.Errorf("content type = %q, want %q", got, want)
	}
	var got echoReply
	if err := json.Unmarshal(resp.Body(), &got); err != nil {
		t.Fatalf("decode %q: %v", resp.Body(), err)
	}
	if got.Route != "test" || got.Method != "POST" || got.Path != "/p/a" || got.Query != "x=1" || got.BodySize != 5 {
		t.Errorf("echo = %+v, want route test, POST /p/a?x=1 with 5 body bytes", got)
	}
	var names []string
	for _, h := range got.Headers {
		names = append(names, h[0])
	}
	if !sort.StringsAreSorted(names) || !strings.Contains(strings.Join(names, ","), "X-A,X-B") {
		t.Errorf("headers = %v, want sorted with X-A before X-B", names)
	}
}
