package engine

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
)

// testSplitter builds a splitter whose sides record which one was called in *got, with a
// seeded draw.
func testSplitter(t testing.TB, cfg *config.Split, got *string) *splitter {
	t.Helper()
	sp, err := newSplitter("split-test", cfg, func(name string) (func(*filter.Ctx), error) {
		return func(*filter.Ctx) { *got = name }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	sp.draw = r.Uint64N
	return sp
}

func splitCtx(raw string) *filter.Ctx {
	var req fasthttp.Request
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		panic(err)
	}
	rc := &fasthttp.RequestCtx{}
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}, nil)
	c := &filter.Ctx{}
	c.Reset(rc, "split-test")
	return c
}

func canarySplit(weight int) *config.Split {
	return &config.Split{Upstreams: []config.SplitUpstream{{Upstream: "stable", Weight: 100 - weight}, {Upstream: "canary", Weight: weight}}}
}

// TestSplitRatio: 10,000 requests at 10% land within ±1.5% of it (seeded: the same every run).
func TestSplitRatio(t *testing.T) {
	for _, w := range []int{0, 5, 10, 50, 100} {
		var got string
		sp := testSplitter(t, canarySplit(w), &got)
		n := 0
		for i := 0; i < 10000; i++ {
			sp.forward(splitCtx("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
			if got == "canary" {
				n++
			}
		}
		share := float64(n) / 100
		if share < float64(w)-1.5 || share > float64(w)+1.5 {
			t.Errorf("weight %d%%: canary got %.2f%%", w, share)
		}
	}
}

// TestSplitSticky: every client keeps its side on every request while the weights stay; raising
// the canary's weight moves clients only onto the canary, never off it.
func TestSplitSticky(t *testing.T) {
	cfg := canarySplit(10)
	cfg.Sticky = &config.Sticky{TTL: 24 * time.Hour}
	var got string
	sp := testSplitter(t, cfg, &got)
	cfg20 := canarySplit(20)
	cfg20.Sticky = cfg.Sticky
	var got20 string
	sp20 := testSplitter(t, cfg20, &got20)
	onCanary := 0
	for user := 0; user < 1000; user++ {
		c := splitCtx("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		sp.forward(c)
		first := got
		sc := string(c.Response.Header.PeekCookie(defaultStickyCookie))
		if !strings.HasPrefix(sc, defaultStickyCookie+"=") || !strings.Contains(sc, "Max-Age=86400") ||
			!strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "Path=/") {
			t.Fatalf("user %d: Set-Cookie %q", user, sc)
		}
		value := strings.SplitN(strings.TrimPrefix(sc, defaultStickyCookie+"="), ";", 2)[0]
		req := "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=b; " + defaultStickyCookie + "=" + value + "\r\n\r\n"
		for i := 0; i < 20; i++ {
			c := splitCtx(req)
			sp.forward(c)
			if got != first {
				t.Fatalf("user %d (bucket %s) flipped from %s to %s", user, value, first, got)
			}
			if sc := c.Response.Header.PeekCookie(defaultStickyCookie); len(sc) != 0 {
				t.Fatalf("user %d: cookie set again: %q", user, sc)
			}
		}
		if first == "canary" {
			onCanary++
			sp20.forward(splitCtx(req))
			if got20 != "canary" {
				t.Fatalf("user %d on the canary at 10%% moved off it at 20%%", user)
			}
		}
	}
	if onCanary < 70 || onCanary > 130 {
		t.Errorf("%d of 1000 users on a 10%% canary", onCanary)
	}
}

// TestSplitNamed: a header or cookie naming a side wins over the weights; anything else
// (another upstream, another case, empty, a tampered sticky cookie) falls back to them.
func TestSplitNamed(t *testing.T) {
	cfg := &config.Split{
		Upstreams: []config.SplitUpstream{{Upstream: "blue", Weight: 1}, {Upstream: "green", Weight: 0}},
		Header:    "X-Canary", Cookie: "canary", Sticky: &config.Sticky{Cookie: "side"},
	}
	tests := []struct{ name, headers, want string }{
		{"nothing", "", "blue"},
		{"header", "X-Canary: green\r\n", "green"},
		{"header in other case", "x-canary: green\r\n", "green"},
		{"header value in other case", "X-Canary: Green\r\n", "blue"},
		{"unknown upstream", "X-Canary: admin\r\n", "blue"},
		{"empty header", "X-Canary: \r\n", "blue"},
		{"cookie", "Cookie: canary=green\r\n", "green"},
		{"header wins over cookie", "X-Canary: blue\r\nCookie: canary=green\r\n", "blue"},
		{"sticky bucket cannot reach a weight-0 side", "Cookie: side=9999\r\n", "blue"},
		{"tampered sticky", "Cookie: side=-1\r\n", "blue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			sp := testSplitter(t, cfg, &got)
			sp.forward(splitCtx("GET / HTTP/1.1\r\nHost: h\r\n" + tt.headers + "\r\n"))
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseBucket(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{{"0", 0}, {"42", 42}, {"9999", 9999}, {"10000", -1}, {"", -1}, {"-1", -1}, {"+1", -1},
		{"1a", -1}, {" 1", -1}, {"00001", -1}, {"0x10", -1}}
	for _, tt := range tests {
		if got := parseBucket([]byte(tt.in)); got != tt.want {
			t.Errorf("parseBucket(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzParseBucket(f *testing.F) {
	for _, s := range []string{"0", "9999", "10000", "-1", "abc", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if b := parseBucket(v); b < -1 || b >= splitBuckets {
			t.Fatalf("parseBucket(%q) = %d", v, b)
		}
	})
}

func TestSplitAllocs(t *testing.T) {
	cfg := canarySplit(10)
	cfg.Header = "X-Canary"
	cfg.Sticky = &config.Sticky{TTL: time.Hour}
	var got string
	sp := testSplitter(t, cfg, &got)
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\nCookie: weir_split=12\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-Canary: canary\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n", // a fresh draw and Set-Cookie
	} {
		c := splitCtx(raw)
		n := testing.AllocsPerRun(1000, func() {
			c.Response.Reset()
			sp.forward(c)
		})
		if n != 0 {
			t.Errorf("%q: %v allocations per request, want 0", raw, n)
		}
	}
}

const splitConfig = `
server: { listen: "127.0.0.1:0", admin: "", drain_timeout: 5s }
access_log: { enabled: false }
upstreams:
  stable: { targets: [%q] }
  canary: { targets: [%q] }
routes:
  - name: shop
    match: { path_prefix: / }
    split:
      upstreams: [ { upstream: stable, weight: 90 }, { upstream: canary, weight: 10 } ]
      header: X-Canary
      sticky: { cookie: shop_side, ttl: 1h }
`

// TestSplitFrontDoor: through the gateway, a 10% canary gets about a tenth of new clients, a
// sticky client stays on its side, and the header opts a tester in.
func TestSplitFrontDoor(t *testing.T) {
	stable, canaryAddr := taggedBackend(t, "stable"), taggedBackend(t, "canary")
	cfg, err := parseConfig("split.yaml", []byte(fmt.Sprintf(splitConfig, stable, canaryAddr)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	gw := serve(t, e)
	client := &fasthttp.HostClient{Addr: gw}
	do := func(hdr, cookie string) (side, setCookie string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://x/cart")
		if hdr != "" {
			req.Header.Set("X-Canary", hdr)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return string(resp.Body()), string(resp.Header.PeekCookie("shop_side"))
	}
	n := 0
	const clients = 1000
	for i := 0; i < clients; i++ {
		side, sc := do("", "")
		if sc == "" {
			t.Fatalf("client %d: no sticky cookie", i)
		}
		if side == "canary" {
			n++
		}
		if i%50 == 0 { // a sample of clients come back with their cookie
			cookie := strings.SplitN(sc, ";", 2)[0]
			for j := 0; j < 5; j++ {
				if again, _ := do("", cookie); again != side {
					t.Fatalf("client %d flipped from %s to %s", i, side, again)
				}
			}
		}
	}
	// Random draws: 1,000 at 10% stay within ±5% except about once in a million runs.
	if n < 50 || n > 150 {
		t.Errorf("canary got %d of %d new clients at 10%%", n, clients)
	}
	if side, _ := do("canary", ""); side != "canary" {
		t.Errorf("X-Canary: canary reached %s", side)
	}
}

// taggedBackend answers every request with its tag as the body.
func taggedBackend(t *testing.T, tag string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) { rc.SetBodyString(tag) }}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// BenchmarkSplit is the split's choice per request: a sticky client with its cookie, and a new
// client drawing a bucket and getting Set-Cookie.
func BenchmarkSplit(b *testing.B) {
	cfg := canarySplit(10)
	cfg.Header = "X-Canary"
	cfg.Sticky = &config.Sticky{TTL: time.Hour}
	for _, bc := range []struct{ name, raw string }{
		{"sticky", "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=b; weir_split=4242\r\n\r\n"},
		{"new", "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var got string
			sp := testSplitter(b, cfg, &got)
			c := splitCtx(bc.raw)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.Response.Reset()
				sp.forward(c)
			}
		})
	}
}
