package proxy

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/proxy/balance"
	"github.com/weir-gateway/weir/core/testkit"
)

// TestForwardAllocsConfigured: the small-GET path stays allocation-free with every balancer,
// a hash key, retries, outlier detection and a route override in place.
func TestForwardAllocsConfigured(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, alg := range balance.Algorithms {
		t.Run(alg, func(t *testing.T) {
			bs := backends(t, 3)
			o := Options{Targets: addrsOf(bs), Weights: []int{1, 2, 3}, Balance: alg,
				Outlier: OutlierOptions{Consecutive5xx: 5, ConsecutiveConnectFailures: 3, BaseEjection: time.Second, MaxEjectedPercent: 50},
				Retry:   RetryOptions{Attempts: 2, BackoffBase: time.Millisecond, BudgetRatio: 0.2, MinRetriesPerSecond: 3, RetryOn5xx: true}}
			if alg == balance.ConsistentHash {
				o.HashOn = "header:X-User"
			}
			u := newUpstream(t, o)
			timeout := 5 * time.Second
			route, err := u.Route(RouteOptions{Timeout: &timeout})
			if err != nil {
				t.Fatal(err)
			}
			var req fasthttp.Request
			req.SetRequestURI("http://api.example.com/v1/items")
			req.Header.SetHost("api.example.com") // the edge always leaves a Host field
			req.Header.Set("X-User", "alice")
			rc := &fasthttp.RequestCtx{}
			rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
			c := &filter.Ctx{}
			run := func() {
				c.Reset(rc, "bench")
				c.Response.Reset()
				route.Forward(c)
				if c.Response.StatusCode() != 200 {
					t.Fatalf("status %d err %v", c.Response.StatusCode(), c.Err())
				}
			}
			for i := 0; i < 10; i++ {
				run() // dial every target
			}
			if allocs := testing.AllocsPerRun(200, run); allocs != 0 {
				t.Errorf("Forward allocs = %v, want 0", allocs)
			}
		})
	}
}

func TestBudget(t *testing.T) {
	tests := []struct {
		name      string
		requests  int
		ratio     float64
		minPerSec int
		want      int // retries allowed
	}{
		{"20% of 100", 100, 0.2, 0, 20},
		{"20% of 100 plus 3/s", 100, 0.2, 3, 50},
		{"quiet upstream gets the floor", 0, 0.2, 1, 10},
		{"no budget, no floor", 100, 0, 0, 0},
		{"disabled", 10, -1, 0, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b budget
			const now = 1000
			for i := 0; i < tt.requests; i++ {
				b.request(now)
			}
			got := 0
			for i := 0; i < 1000 && b.withdraw(now, tt.ratio, tt.minPerSec); i++ {
				got++
			}
			if got != tt.want {
				t.Errorf("allowed %d retries, want %d", got, tt.want)
			}
		})
	}
	// Slots older than the window no longer count.
	var b budget
	for i := 0; i < 100; i++ {
		b.request(10)
	}
	if b.withdraw(10+budgetWindow, 0.5, 0) {
		t.Error("requests from a window ago still fund retries")
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n         int
		base, max time.Duration
		cap       time.Duration
	}{
		{1, 10 * time.Millisecond, time.Second, 10 * time.Millisecond},
		{3, 10 * time.Millisecond, time.Second, 40 * time.Millisecond},
		{20, 10 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond},
		{1, 0, 0, 0},
	}
	for _, tt := range tests {
		var seenHigh bool
		for i := 0; i < 200; i++ {
			got := backoff(tt.n, tt.base, tt.max)
			if got < 0 || got > tt.cap {
				t.Fatalf("backoff(%d, %s, %s) = %s, want in [0, %s]", tt.n, tt.base, tt.max, got, tt.cap)
			}
			seenHigh = seenHigh || got > tt.cap/2
		}
		if tt.cap > 0 && !seenHigh {
			t.Errorf("backoff(%d) never above half its cap: no jitter range", tt.n)
		}
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{"1.5", 0, false},
		{"-1", 0, false},
		{"Fri, 02 Jan 2026 03:04:15 GMT", 10 * time.Second, true},
		{"Fri, 02 Jan 2026 03:04:00 GMT", 0, true}, // in the past: retry now
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := retryAfter([]byte(tt.in), now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestEjection: growing cooldowns, the ejected-fraction cap, and un-ejection on expiry.
func TestEjection(t *testing.T) {
	p, err := NewPool(Options{Name: "e"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	o := &OutlierOptions{ConsecutiveConnectFailures: 2, BaseEjection: 40 * time.Millisecond, MaxEjection: 60 * time.Millisecond, MaxEjectedPercent: 50}
	var ms []*member
	for _, a := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"} {
		m, err := p.acquire(a, "", 1)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	fail := func(m *member) {
		p.observe(m, outcomeConnect, o)
		p.observe(m, outcomeConnect, o)
	}
	fail(ms[0])
	if st, _ := ms[0].state(); st != "ejected" || ms[0].target.Available() {
		t.Fatalf("after 2 connect failures state %s available %v", st, ms[0].target.Available())
	}
	// An OK in between resets the run.
	p.observe(ms[1], outcomeConnect, o)
	p.observe(ms[1], outcomeOK, o)
	p.observe(ms[1], outcomeConnect, o)
	if st, _ := ms[1].state(); st != "healthy" {
		t.Errorf("non-consecutive failures ejected: %s", st)
	}
	fail(ms[1])
	fail(ms[2]) // 50% of 4 = 2 already ejected: the cap holds
	if st, _ := ms[2].state(); st != "healthy" {
		t.Errorf("third of four ejected despite the 50%% cap: %s", st)
	}
	if got := p.ejected.Load(); got != 2 {
		t.Errorf("ejected = %d, want 2", got)
	}
	waitForState(t, ms[0], "healthy")
	// The second ejection in a row lasts twice as long, capped at MaxEjection.
	fail(ms[0])
	_, until := ms[0].state()
	if d := time.Until(until); d < 45*time.Millisecond || d > 60*time.Millisecond {
		t.Errorf("second ejection lasts %s, want 60ms (2 × 40ms capped at 60ms)", d)
	}
	// After behaving for longer than MaxEjection, the cooldown starts over at the base.
	waitForState(t, ms[0], "healthy")
	ms[0].mu.Lock()
	ms[0].unejectedAt = time.Now().Add(-time.Second)
	ms[0].mu.Unlock()
	fail(ms[0])
	_, until = ms[0].state()
	if d := time.Until(until); d > 40*time.Millisecond {
		t.Errorf("ejection after a quiet spell lasts %s, want the 40ms base", d)
	}
	// A passing active check ends an ejection early.
	ms[0].applyCheck(CheckResult{OK: true, Time: time.Now()}, &HealthOptions{HealthyThreshold: 1, UnhealthyThreshold: 1})
	if st, _ := ms[0].state(); st != "healthy" {
		t.Errorf("passing check left state %s", st)
	}
	// Active failures mark unhealthy after the threshold, and passes bring it back.
	h := &HealthOptions{HealthyThreshold: 2, UnhealthyThreshold: 2}
	for i, want := range []string{"healthy", "unhealthy", "unhealthy", "unhealthy", "healthy"} {
		ok := i >= 3
		ms[3].applyCheck(CheckResult{OK: ok, Time: time.Now()}, h)
		if st, _ := ms[3].state(); st != want {
			t.Errorf("check %d (ok %v): state %s, want %s", i, ok, st, want)
		}
	}
	for _, m := range ms {
		p.release(m)
	}
	if got := p.ejected.Load(); got != 0 {
		t.Errorf("ejected after releasing every member = %d, want 0", got)
	}
}

func waitForState(t *testing.T, m *member, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if st, _ := m.state(); st == want {
			return
		}
		if time.Now().After(deadline) {
			st, _ := m.state()
			t.Fatalf("state %s, want %s", st, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestPoolReloadKeepsState: a new view on the same pool keeps the members (and so health,
// latency and connections) of the addresses that stay; checkers stop with the last view.
func TestPoolReloadKeepsState(t *testing.T) {
	bs := backends(t, 3)
	p, err := NewPool(Options{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	health := HealthOptions{Path: "/", Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond}
	u1, err := p.Upstream(Options{Name: "r", Targets: addrsOf(bs), Health: health})
	if err != nil {
		t.Fatal(err)
	}
	m0 := u1.cur.Load().members[0]
	m0.target.End(m0.target.Begin(), false) // a latency sample to carry over
	u2, err := p.Upstream(Options{Name: "r", Targets: addrsOf(bs[:2]), Weights: []int{3, 1}, Balance: balance.P2C, Health: health})
	if err != nil {
		t.Fatal(err)
	}
	if u2.cur.Load().members[0] != m0 {
		t.Error("a target that stayed got a new member")
	}
	if m0.target.EWMA() == 0 || m0.target.Weight() != 3 {
		t.Errorf("carried member: ewma %s weight %d, want a sample and weight 3", m0.target.EWMA(), m0.target.Weight())
	}
	if n := len(p.Status()); n != 3 {
		t.Errorf("pool holds %d targets while both views live, want 3", n)
	}
	_ = u1.Close()
	if n := len(p.Status()); n != 2 {
		t.Errorf("pool holds %d targets after the old view closed, want 2", n)
	}
	waitFor(t, func() bool {
		for _, st := range p.Status() {
			if st.LastCheck == nil || !st.LastCheck.OK {
				return false
			}
		}
		return true
	})
	_ = u2.Close()
	_ = p.Close()
	for _, m := range []*member{m0} {
		if m.stop != nil {
			t.Error("checker still running after the pool closed")
		}
	}
}

// TestPoolHammer runs requests while views are rebuilt, targets fail and recover, and the
// admin status is read, for the race detector.
func TestPoolHammer(t *testing.T) {
	bs := backends(t, 3)
	p, err := NewPool(Options{Name: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	opts := Options{Name: "h", Targets: addrsOf(bs), Balance: balance.LeastRequest,
		Health:  HealthOptions{Path: "/", Interval: 5 * time.Millisecond, Timeout: 50 * time.Millisecond},
		Outlier: OutlierOptions{Consecutive5xx: 2, BaseEjection: 5 * time.Millisecond, MaxEjectedPercent: 60},
		Retry:   RetryOptions{Attempts: 1, RetryOn5xx: true, BudgetRatio: 0.5, MinRetriesPerSecond: 10}}
	var cur atomic.Pointer[Upstream]
	u, err := p.Upstream(opts)
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(u)
	gw := gateway(t, nil, func(c *filter.Ctx) { cur.Load().Forward(c) })
	hc := newClient(gw)
	h := testkit.NewHammer(t)
	for w := 0; w < 4; w++ {
		h.Go(func(int) bool {
			if _, _, err := get(hc, "", ""); err != nil {
				t.Errorf("request: %v", err)
				return false
			}
			return true
		})
	}
	h.Go(func(i int) bool {
		o := opts
		o.Targets = addrsOf(bs[:2+i%2])
		o.Health.Interval = time.Duration(5+i%3) * time.Millisecond
		next, err := p.Upstream(o)
		if err != nil {
			t.Error(err)
			return false
		}
		old := cur.Swap(next)
		time.Sleep(2 * time.Millisecond) // let requests on the old view drain
		_ = old.Close()
		bs[i%3].status.Store(int64([]int{0, 503}[i%2]))
		_ = p.Status()
		return true
	})
	time.Sleep(500 * time.Millisecond)
	h.Stop()
	_ = cur.Load().Close()
	if n := len(p.Status()); n != 0 {
		t.Errorf("%d members left after the last view closed", n)
	}
}

// TestHealthSettingsFollowNewestView: a view that closes while newer ones live changes nothing;
// when the newest closes (a reload whose build failed after creating it), the settings of the
// view before it apply again.
func TestHealthSettingsFollowNewestView(t *testing.T) {
	b := newCtlBackend(t, "b")
	p, err := NewPool(Options{Name: "v"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	view := func(path string) *Upstream {
		u, err := p.Upstream(Options{Name: "v", Targets: []string{b.addr},
			Health: HealthOptions{Path: path, Interval: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a, bv, c := view("/a"), view("/b"), view("/c")
	if got := p.health.Load().Path; got != "/c" {
		t.Fatalf("health path %q, want the newest view's /c", got)
	}
	_ = bv.Close()
	if got := p.health.Load().Path; got != "/c" {
		t.Errorf("after an older view closed: %q, want /c", got)
	}
	_ = c.Close()
	if got := p.health.Load().Path; got != "/a" {
		t.Errorf("after the newest view closed: %q, want /a again", got)
	}
	_ = a.Close()
}
