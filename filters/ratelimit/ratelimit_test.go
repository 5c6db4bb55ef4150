package ratelimit

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func build(tb testing.TB, yamlCfg string) (filter.Filter, error) {
	return filtertest.NewFilter(tb, New, Name, yamlCfg)
}

// mustBuild builds the filter and, when clock is not nil, gives it a local store on that
// clock.
func mustBuild(tb testing.TB, yamlCfg string, clock *fakeClock) *Filter {
	tb.Helper()
	f := filtertest.MustNewFilter(tb, New, Name, yamlCfg).(*Filter)
	tb.Cleanup(func() { f.Close() })
	if clock != nil {
		f.local.Close()
		f.local = newLocalStore(f.limits, defaultMaxKeys, clock.now, false)
	}
	return f
}

type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// run sends one request through f and reports its status (200 when it continued).
func run(f *Filter, c *filter.Ctx) int {
	c.Response.Reset()
	if f.OnRequest(c) == filter.Stop {
		return c.Response.StatusCode()
	}
	f.OnResponse(c)
	return 200
}

func ctx(tb testing.TB, client string, head string) *filter.Ctx {
	c := filtertest.NewCtx(tb, "GET / HTTP/1.1\nHost: h\n"+head)
	if client != "" {
		c.SetClientIP(netip.MustParseAddr(client))
	}
	return c
}

// TestAccuracyFakeClock drives 64 concurrent clients sharing one key for 10 s of fake time,
// one attempt each per millisecond: GCRA must allow exactly the burst plus one request per
// emission interval, however the attempts interleave.
func TestAccuracyFakeClock(t *testing.T) {
	clock := &fakeClock{}
	f := mustBuild(t, `{key: route, rate: 1000, per: 10s}`, clock)
	const clients, steps = 64, 10_000 // 1 ms steps: 10 s
	var allowed atomic.Int64
	ctxs := make([]*filter.Ctx, clients)
	for i := range ctxs {
		ctxs[i] = ctx(t, "", "")
	}
	for step := 0; step < steps; step++ {
		var wg sync.WaitGroup
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func(c *filter.Ctx) {
				defer wg.Done()
				if f.OnRequest(c) == filter.Continue {
					allowed.Add(1)
					f.OnResponse(c)
				}
			}(ctxs[i])
		}
		wg.Wait()
		if step < steps-1 {
			clock.advance(time.Millisecond)
		}
	}
	// 1,000 at once (burst = rate), then one per 10 ms over the 9.999 s that follow.
	if got, want := allowed.Load(), int64(1000+999); got != want {
		t.Fatalf("allowed %d requests, want exactly %d", got, want)
	}
}

// TestNoDoubleBurstAtWindowEdge: a fixed-window limiter lets a client spend a whole window's
// quota just before the edge and again just after it. GCRA does not.
func TestNoDoubleBurstAtWindowEdge(t *testing.T) {
	clock := &fakeClock{}
	f := mustBuild(t, `{rate: 10, per: 1s}`, clock)
	c := ctx(t, "198.51.100.7", "")
	clock.advance(999 * time.Millisecond)
	n := 0
	for run(f, c) == 200 {
		n++
	}
	clock.advance(2 * time.Millisecond) // past the "edge" of the second
	for run(f, c) == 200 {
		n++
	}
	if n != 10 {
		t.Fatalf("allowed %d around the window edge, want 10", n)
	}
	clock.advance(100 * time.Millisecond) // one emission interval: exactly one more
	if got := run(f, c); got != 200 {
		t.Fatalf("after one interval: status %d, want 200", got)
	}
	if got := run(f, c); got != 429 {
		t.Fatalf("second request after one interval: status %d, want 429", got)
	}
}

// TestSeveralLimits: a request must pass every limit, and one denied by any limit consumes
// none, so a client hammering the per-second limit does not burn its daily quota.
func TestSeveralLimits(t *testing.T) {
	clock := &fakeClock{}
	f := mustBuild(t, `{limits: [{rate: 2, per: 1s}, {rate: 5, per: 1m, name: minute}]}`, clock)
	c := ctx(t, "198.51.100.7", "")
	var got []int
	for i := 0; i < 4; i++ {
		got = append(got, run(f, c))
	}
	for i := 0; i < 4; i++ { // 4 more seconds: the minute limit (5) stops the 6th
		clock.advance(time.Second)
		got = append(got, run(f, c), run(f, c))
	}
	want := []int{200, 200, 429, 429, 200, 200, 200, 429, 429, 429, 429, 429}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("statuses:\n got %v\nwant %v", got, want)
	}
	// The 429s at t=0 consumed nothing of the minute limit: 5 allowed in all.
	if s := f.Stats(); s.Allowed != 5 {
		t.Fatalf("allowed %d, want 5", s.Allowed)
	}
	// Retry-After names the longest wait: the minute limit's.
	c.Response.Reset()
	f.OnRequest(c)
	if ra := string(c.Response.Header.Peek("Retry-After")); ra != "8" {
		t.Fatalf("Retry-After %q, want 8 (the minute limit frees its next request at 12 s)", ra)
	}
}

// TestHeadersGolden pins the exact bytes of the fields (draft-ietf-httpapi-ratelimit-headers-10)
// and the 429 answer.
func TestHeadersGolden(t *testing.T) {
	type answer struct{ status, policy, ratelimit, retry, body string }
	tests := []struct {
		name string
		cfg  string
		n    int // requests sent before the one checked
		step time.Duration
		want answer
	}{
		{"first request", `{rate: 10, per: 1s}`, 0, 0, answer{"200",
			`"default";q=10;w=1`, `"default";r=9;t=1`, "", ""}},
		{"burst spent", `{rate: 10, per: 1s}`, 10, 0, answer{"429",
			`"default";q=10;w=1`, `"default";r=0;t=1`, "1", `{"error":"Too Many Requests","status":429}` + "\n"}},
		{"burst above rate", `{rate: 1, per: 1m, burst: 3}`, 1, 0, answer{"200",
			`"default";q=1;w=60`, `"default";r=1;t=120`, "", ""}},
		{"two limits", `{limits: [{rate: 10, per: 1s}, {rate: 1000, per: 24h}]}`, 0, 0, answer{"200",
			`"10-per-1s";q=10;w=1, "1000-per-1d";q=1000;w=86400`, `"10-per-1s";r=9;t=1, "1000-per-1d";r=999;t=87`, "", ""}},
		{"denied by the daily limit", `{limits: [{rate: 10, per: 1s}, {rate: 3, per: 24h, name: day}]}`, 3, 0, answer{"429",
			`"10-per-1s";q=10;w=1, "day";q=3;w=86400`, `"10-per-1s";r=7;t=1, "day";r=0;t=86400`, "28800",
			`{"error":"Too Many Requests","status":429}` + "\n"}},
		{"recovering", `{rate: 10, per: 1s}`, 10, 250 * time.Millisecond, answer{"200",
			`"default";q=10;w=1`, `"default";r=1;t=1`, "", ""}},
		{"headers off", `{rate: 10, per: 1s, headers: false}`, 0, 0, answer{"200", "", "", "", ""}},
		{"headers off, denied", `{rate: 1, per: 1s, headers: false}`, 1, 0, answer{"429", "", "", "1",
			`{"error":"Too Many Requests","status":429}` + "\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			f := mustBuild(t, tt.cfg, clock)
			c := ctx(t, "192.0.2.10", "")
			for i := 0; i < tt.n; i++ {
				run(f, c)
			}
			clock.advance(tt.step)
			st := run(f, c)
			h := &c.Response.Header
			got := answer{fmt.Sprint(st), string(h.Peek("RateLimit-Policy")), string(h.Peek("RateLimit")),
				string(h.Peek("Retry-After")), string(c.Response.Body())}
			if got != tt.want {
				t.Errorf("\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestHeadersReplaceUpstreams: the gateway's fields replace any the upstream sent, on every
// answer, including a later filter's local reply.
func TestHeadersReplaceUpstreams(t *testing.T) {
	f := mustBuild(t, `{rate: 5, per: 1s}`, &fakeClock{})
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	c := ctx(t, "", "")
	p.Run(c, func(c *filter.Ctx) {
		c.Response.Header.Set("RateLimit", `"upstream";r=100`)
		c.Response.Header.Set("RateLimit-Policy", `"upstream";q=100`)
		c.Response.SetStatusCode(201)
	})
	if got := string(c.Response.Header.Peek("RateLimit")); got != `"default";r=4;t=1` {
		t.Errorf("RateLimit %q", got)
	}
	if got := string(c.Response.Header.Peek("RateLimit-Policy")); got != `"default";q=5;w=1` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if n := len(c.Response.Header.PeekAll("RateLimit")); n != 1 {
		t.Errorf("%d RateLimit fields, want 1", n)
	}
}

type claims map[string]string

func (m claims) Claim(n string) (string, bool) { v, ok := m[n]; return v, ok }

// TestKeys: who shares a limit with whom. Each case spends a limit of 1 with request a, then
// sends b: 429 means they share a key.
func TestKeys(t *testing.T) {
	alice := &filter.Consumer{Name: "alice"}
	bob := &filter.Consumer{Name: "bob"}
	type req struct {
		ip       string
		head     string
		consumer *filter.Consumer
		claims   claims
	}
	tests := []struct {
		name   string
		key    string
		a, b   req
		shared bool
	}{
		{"same ip", "client_ip", req{ip: "192.0.2.1"}, req{ip: "192.0.2.1"}, true},
		{"other ip", "client_ip", req{ip: "192.0.2.1"}, req{ip: "192.0.2.2"}, false},
		{"v4-mapped v6 is the v4 address", "client_ip", req{ip: "192.0.2.1"}, req{ip: "::ffff:192.0.2.1"}, true},
		{"X-Forwarded-For is not the client", "client_ip", req{ip: "192.0.2.1", head: "X-Forwarded-For: 10.0.0.1\n"},
			req{ip: "192.0.2.1", head: "X-Forwarded-For: 10.0.0.2\n"}, true},
		{"ipv6", "client_ip", req{ip: "2001:db8::1"}, req{ip: "2001:db8::2"}, false},
		{"route: everyone", "route", req{ip: "192.0.2.1"}, req{ip: "192.0.2.2"}, true},
		{"header: same value, other ips", "header:X-Api-Key", req{ip: "192.0.2.1", head: "X-Api-Key: k1\n"},
			req{ip: "192.0.2.2", head: "x-api-key: k1\n"}, true},
		{"header: other value", "header:X-Api-Key", req{ip: "192.0.2.1", head: "X-Api-Key: k1\n"},
			req{ip: "192.0.2.1", head: "X-Api-Key: k2\n"}, false},
		{"header: first of duplicates", "header:X-Api-Key", req{ip: "192.0.2.1", head: "X-Api-Key: k1\n"},
			req{ip: "192.0.2.2", head: "X-Api-Key: k1\nX-Api-Key: k2\n"}, true},
		{"header: missing falls back to the ip", "header:X-Api-Key", req{ip: "192.0.2.1"}, req{ip: "192.0.2.1"}, true},
		{"header: empty falls back to the ip", "header:X-Api-Key", req{ip: "192.0.2.1", head: "X-Api-Key:\n"}, req{ip: "192.0.2.1"}, true},
		{"header: missing, other ips", "header:X-Api-Key", req{ip: "192.0.2.1"}, req{ip: "192.0.2.2"}, false},
		{"header: value spelling an ip is not that ip", "header:X-Api-Key", req{ip: "192.0.2.9"},
			req{ip: "192.0.2.1", head: "X-Api-Key: 192.0.2.9\n"}, false},
		{"consumer: same, other ips", "consumer", req{ip: "192.0.2.1", consumer: alice}, req{ip: "192.0.2.2", consumer: alice}, true},
		{"consumer: other", "consumer", req{ip: "192.0.2.1", consumer: alice}, req{ip: "192.0.2.1", consumer: bob}, false},
		{"consumer: none falls back to the ip", "consumer", req{ip: "192.0.2.1"}, req{ip: "192.0.2.1"}, true},
		{"consumer: anonymous is not a consumer", "consumer", req{ip: "192.0.2.1"}, req{ip: "192.0.2.1", consumer: alice}, false},
		{"claim: same sub", "claim:sub", req{ip: "192.0.2.1", claims: claims{"sub": "u1"}}, req{ip: "192.0.2.2", claims: claims{"sub": "u1"}}, true},
		{"claim: other sub", "claim:sub", req{claims: claims{"sub": "u1"}}, req{claims: claims{"sub": "u2"}}, false},
		{"claim: missing falls back to the ip", "claim:sub", req{ip: "192.0.2.1", claims: claims{"x": "1"}}, req{ip: "192.0.2.1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, fmt.Sprintf(`{key: %q, rate: 1, per: 1m}`, tt.key), &fakeClock{})
			send := func(r req) int {
				c := ctx(t, r.ip, r.head)
				c.SetConsumer(r.consumer)
				if r.claims != nil {
					c.SetClaims(r.claims)
				}
				return run(f, c)
			}
			if got := send(tt.a); got != 200 {
				t.Fatalf("first request: %d", got)
			}
			if got := send(tt.b) == 429; got != tt.shared {
				t.Fatalf("shared = %v, want %v", got, tt.shared)
			}
		})
	}
}

// TestMaxKeys: a flood of distinct keys never holds more than max_keys (rounded up to the
// shards), idle keys go first, and the limit of a key that was kept still holds.
func TestMaxKeys(t *testing.T) {
	clock := &fakeClock{}
	f := mustBuild(t, `{key: "header:X-Key", rate: 1, per: 1h, max_keys: 640}`, nil)
	f.local.Close()
	f.local = newLocalStore(f.limits, 640, clock.now, false)
	for i := 0; i < 20_000; i++ {
		run(f, ctx(t, "", fmt.Sprintf("X-Key: k%d\n", i)))
	}
	if n := f.local.keys(); n > 640 {
		t.Fatalf("%d keys held, want at most 640", n)
	}
	if f.local.evicted.Load() == 0 {
		t.Fatal("no eviction counted")
	}
	clock.advance(2 * time.Hour) // every key idle
	f.local.sweep()
	if n := f.local.keys(); n != 0 {
		t.Fatalf("%d keys after sweeping idle ones, want 0", n)
	}
}

// TestStateSurvivesRebuild: a filter built again with the same definition (a reload) shares
// the first one's state through Env.Shared; a changed definition starts afresh.
func TestStateSurvivesRebuild(t *testing.T) {
	shared := filter.NewShared()
	buildWith := func(cfg string) *Filter {
		tree, err := filtertest.ParseYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		f, err := New(filter.Env{Route: "api", Filter: Name, Shared: shared}, decoder(tree))
		if err != nil {
			t.Fatal(err)
		}
		return f.(*Filter)
	}
	c := ctx(t, "192.0.2.1", "")
	old := buildWith(`{rate: 2, per: 1m}`)
	run(old, c)
	run(old, c)
	same := buildWith(`{rate: 2, per: 1m}`)
	old.Close() // the old snapshot retires after the new one acquired
	if got := run(same, c); got != 429 {
		t.Fatalf("after a reload with the same definition: %d, want 429 (state kept)", got)
	}
	changed := buildWith(`{rate: 3, per: 1m}`)
	same.Close()
	if got := run(changed, c); got != 200 {
		t.Fatalf("after a changed definition: %d, want 200 (fresh state)", got)
	}
	changed.Close()
	if n := shared.Len(); n != 0 {
		t.Fatalf("%d shared values left after every filter closed", n)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{}`, "at least one limit"},
		{`{rate: 0, per: 1s}`, "rate must be at least 1"},
		{`{rate: -1}`, "rate must be at least 1"},
		{`{rate: 1, per: 500ms}`, "whole number of seconds"},
		{`{rate: 1, per: 1500ms}`, "whole number of seconds"},
		{`{rate: 1, burst: -1}`, "burst -1"},
		{`{rate: 2000000, per: 1s}`, "above one request per microsecond"},
		{`{rate: 1, limits: [{rate: 1}]}`, "not both"},
		{`{limits: [{rate: 1}, {rate: 2}, {rate: 3}, {rate: 4}, {rate: 5}]}`, "at most 4"},
		{`{limits: [{rate: 1, name: a}, {rate: 2, name: a}]}`, "used twice"},
		{`{limits: [{rate: 1, name: "a b"}]}`, "only letters"},
		{`{limits: [{rate: 1, name: "a\"b"}]}`, "only letters"},
		{`{rate: 1, key: ip}`, "is not client_ip"},
		{`{rate: 1, key: "header:"}`, "empty header name"},
		{`{rate: 1, key: "header:X Y"}`, "not allowed in a token"},
		{`{rate: 1, key: "claim:"}`, "needs a claim name"},
		{`{rate: 1, mode: cluster}`, "not local or redis"},
		{`{rate: 1, mode: redis}`, "addr is required"},
		{`{rate: 1, redis: {addr: "127.0.0.1:6379"}}`, "only with mode redis"},
		{`{rate: 1, fail: closed}`, "mode redis only"},
		{`{rate: 1, mode: redis, redis: {addr: "x:1"}, fail: maybe}`, "not open or closed"},
		{`{rate: 1, mode: redis, redis: {addr: "x:1"}, max_keys: 10}`, "mode local only"},
		{`{rate: 1, mode: redis, redis: {addr: "x:1", password: a, password_env: B}}`, "both set"},
		{`{rate: 1, mode: redis, redis: {addr: "x:1", password_env: WEIR_TEST_UNSET_PASSWORD}}`, "WEIR_TEST_UNSET_PASSWORD is not set"},
		{`{rate: 1, mode: redis, redis: {addr: "x:1", timeout: 10}}`, "timeout"},
		{`{rate: 1, max_keys: -5}`, "negative"},
		{`{rate: 1, bogus: 1}`, "bogus"},
		{`{limits: [{rate: 1, window: 1s}]}`, "window"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			f, err := build(t, tt.cfg)
			if err == nil {
				f.(*Filter).Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build(%s): got error %v, want one containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// TestConfigErrorQuotesNoSecret: a password never appears in an error.
func TestConfigErrorQuotesNoSecret(t *testing.T) {
	_, err := build(t, `{rate: 1, mode: redis, redis: {addr: "x:1", password: hunter2-secret, password_env: X}}`)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v", err)
	}
}

const allocCfg = `{key: "header:X-Api-Key", limits: [{rate: 1000000, per: 1s}, {rate: 100000000, per: 24h}]}`

// TestZeroAllocs: the accept path, the deny path and the response phase allocate nothing.
func TestZeroAllocs(t *testing.T) {
	for _, tc := range []struct{ name, cfg string }{
		{"accept", allocCfg},
		{"deny", `{key: client_ip, rate: 1, per: 1h}`},
		{"consumer", `{key: consumer, rate: 1000000, per: 1s}`},
		{"claim", `{key: "claim:sub", rate: 1000000, per: 1s}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustBuild(t, tc.cfg, nil)
			c := ctx(t, "2001:db8::1", "X-Api-Key: k-123\n")
			c.SetConsumer(&filter.Consumer{Name: "alice"})
			c.SetClaims(claims{"sub": "u1"})
			allocs := testing.AllocsPerRun(1000, func() {
				if f.OnRequest(c) == filter.Continue {
					f.OnResponse(c)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per request, want 0", allocs)
			}
		})
	}
}

func BenchmarkLocalAccept(b *testing.B) {
	f := mustBuild(b, allocCfg, nil)
	c := ctx(b, "", "X-Api-Key: k-123\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}

// BenchmarkLocalAcceptParallel: many clients (distinct keys) from every core.
func BenchmarkLocalAcceptParallel(b *testing.B) {
	f := mustBuild(b, `{key: client_ip, rate: 1000000, per: 1s}`, nil)
	var n atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := n.Add(1)
		c := ctx(b, fmt.Sprintf("10.0.%d.%d", i/250, i%250), "")
		for pb.Next() {
			f.OnRequest(c)
			f.OnResponse(c)
		}
	})
}

func FuzzKeyHeader(f *testing.F) {
	f.Add([]byte("k1"))
	f.Add([]byte(""))
	f.Add([]byte("192.0.2.1"))
	f.Add([]byte{0xff, 0x00, '\r'})
	rl := mustBuild(f, `{key: "header:X-Api-Key", rate: 1, per: 1h}`, &fakeClock{})
	f.Fuzz(func(t *testing.T, v []byte) {
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
		c.Request.Header.SetBytesV("X-Api-Key", v)
		first := run(rl, c)
		// The same key, sent again, is limited (1 per hour): a key maps to one slot.
		if second := run(rl, c); second != 429 {
			t.Fatalf("second request with key %q: %d, want 429 (first %d)", v, second, first)
		}
	})
}

func decoder(tree any) filter.Decoder {
	return func(v any) error { return config.DecodeStrict(tree, v) }
}
