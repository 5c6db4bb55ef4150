package proxy

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/weir-gateway/weir/core/proxy/balance"
	"github.com/weir-gateway/weir/core/testkit"
)

// canonical lists one name per balancing algorithm.
var canonical = []string{balance.RoundRobin, balance.Random, balance.LeastRequest, balance.P2C, balance.ConsistentHash}

// setUnhealthy marks m as an active health check would.
func setUnhealthy(m *member, bad bool) {
	m.mu.Lock()
	m.unhealthy = bad
	m.updateLocked()
	m.mu.Unlock()
}

// TestBalancerHammer runs Pick with Begin/End from 8 goroutines per algorithm while health flips
// and reloads build new views of the same pool, retiring old ones. Run it with -race. Afterwards
// every target must be back to zero in flight and no Pick may have returned a target that was
// excluded or outside its view. Nothing is dialled: requests stop at the balancer.
func TestBalancerHammer(t *testing.T) {
	const workers, iters = 8, 2000
	addrs := make([]string, 12)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.1.0.%d:80", i+1)
	}
	for _, alg := range canonical {
		t.Run(alg, func(t *testing.T) {
			p, err := NewPool(Options{Name: "h"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var mu sync.Mutex
			var views []*Upstream // every view built, closed at the end if still open
			seen := map[*member]bool{}
			build := func(o Options) (*Upstream, error) {
				u, err := p.Upstream(o)
				if err != nil {
					return nil, err
				}
				mu.Lock()
				views = append(views, u)
				for _, m := range u.cur.Load().members {
					seen[m] = true
				}
				mu.Unlock()
				return u, nil
			}
			first, err := build(Options{Name: "h", Targets: addrs, Balance: alg})
			if err != nil {
				t.Fatal(err)
			}
			var cur atomic.Pointer[Upstream]
			cur.Store(first)

			h := testkit.NewHammer(t)
			var prev *Upstream
			h.Go(func(n int) bool { // health checker and reloader
				v := cur.Load().cur.Load()
				setUnhealthy(v.members[n%len(v.members)], n%3 == 0)
				if n%50 != 0 {
					return true
				}
				// Reload with one address fewer and new weights; the rest keep their state.
				w := make([]int, len(addrs)-1)
				for i := range w {
					w[i] = (i+n)%4 + 1
				}
				next, err := build(Options{Name: "h", Targets: addrs[n%2 : len(addrs)-1+n%2], Weights: w, Balance: alg})
				if err != nil {
					t.Error(err)
					return false
				}
				// The view two reloads back retires: its dropped address leaves the pool.
				if prev != nil {
					_ = prev.Close()
				}
				prev = cur.Swap(next)
				return true
			})

			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					var key []byte
					for i := range iters {
						v := cur.Load().cur.Load()
						key = fmt.Appendf(key[:0], "192.0.%d.%d", (i*workers+g)/256, (i*workers+g)%256)
						ex := i%5 - 1
						idx := v.bal.Pick(key, ex)
						if idx == -1 {
							continue // everything down or excluded at this instant
						}
						if idx < 0 || idx >= len(v.members) || idx == ex {
							t.Errorf("Pick(%q, %d) = %d with %d targets", key, ex, idx, len(v.members))
							return
						}
						tg := v.members[idx].target
						start := tg.Begin()
						tg.End(start, i%7 == 0)
					}
				})
			}
			wg.Wait()
			h.Stop()
			for m := range seen {
				if n := m.target.InFlight(); n != 0 {
					t.Errorf("%s: %d in flight after all requests ended", m.addr, n)
				}
			}
			for _, st := range p.Status() {
				if st.InFlight != 0 {
					t.Errorf("status of %s: %d in flight after all requests ended", st.Address, st.InFlight)
				}
			}
			for _, u := range views {
				_ = u.Close()
			}
			if n := len(p.Status()); n != 0 {
				t.Errorf("%d targets left after every view closed", n)
			}
		})
	}
}

// TestPoolKeepsTargets: a reload keeps the *Target of every address that stays, with its
// load, latency estimate, health and new weight; a new address starts fresh; an address whose
// last view closed leaves the pool, and when it comes back it starts fresh.
func TestPoolKeepsTargets(t *testing.T) {
	p, err := NewPool(Options{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u1, err := p.Upstream(Options{Name: "r", Targets: []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}, Weights: []int{1, 2, 3}})
	if err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	first := u1.cur.Load().members
	// Live state that must survive the reload.
	setUnhealthy(first[0], true)
	first[1].target.Begin()
	first[1].target.End(first[1].target.Begin(), false)

	u2, err := p.Upstream(Options{Name: "r", Targets: []string{"10.0.0.2:1", "10.0.0.4:1", "10.0.0.1:1"}, Weights: []int{5, 1, 1}})
	if err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	defer u2.Close()
	second := u2.cur.Load().members
	if second[0] != first[1] || second[2] != first[0] {
		t.Fatal("reload: kept addresses got new targets")
	}
	if tg := second[1].target; tg.Addr != "10.0.0.4:1" || tg.InFlight() != 0 || !tg.Available() {
		t.Errorf("new target 10.0.0.4:1: addr %s, %d in flight, available %t; want a fresh available target", tg.Addr, tg.InFlight(), tg.Available())
	}
	if got := second[0].target.Weight(); got != 5 {
		t.Errorf("10.0.0.2:1 weight %d, want 5", got)
	}
	if second[2].target.Available() {
		t.Error("10.0.0.1:1 lost its health state")
	}
	if tg := second[0].target; tg.InFlight() != 1 || tg.EWMA() == 0 {
		t.Errorf("10.0.0.2:1 in flight %d, EWMA %v: lost its load", tg.InFlight(), tg.EWMA())
	}
	if n := len(p.Status()); n != 4 {
		t.Errorf("pool holds %d targets while both views live, want 4", n)
	}
	_ = u1.Close()
	st := p.Status()
	for _, s := range st {
		if s.Address == "10.0.0.3:1" {
			t.Error("removed 10.0.0.3:1 still in the pool")
		}
	}
	if len(st) != 3 {
		t.Errorf("pool holds %d targets, want 3", len(st))
	}

	// A removed address that comes back starts fresh.
	u3, err := p.Upstream(Options{Name: "r", Targets: []string{"10.0.0.3:1"}})
	if err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	defer u3.Close()
	if m := u3.cur.Load().members[0]; m == first[2] || m.target == first[2].target || m.target.Weight() != 1 {
		t.Errorf("10.0.0.3:1 came back as the old target or with weight %d; want fresh, weight 1", m.target.Weight())
	}
}

// TestPoolWeightChangeSparesOldView checks that a reload changing a weight leaves the balancer
// of the running view serving the old weights.
func TestPoolWeightChangeSparesOldView(t *testing.T) {
	p, err := NewPool(Options{Name: "w"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addrs := []string{"10.0.0.1:1", "10.0.0.2:1"}
	old, err := p.Upstream(Options{Name: "w", Targets: addrs, Weights: []int{3, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	next, err := p.Upstream(Options{Name: "w", Targets: addrs, Weights: []int{1, 3}})
	if err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	defer next.Close()
	got := make([]int, 2)
	bal := old.cur.Load().bal
	for range 4000 {
		got[bal.Pick(nil, -1)]++
	}
	if got[0] != 3000 || got[1] != 1000 {
		t.Errorf("old balancer after reload: picks %v, want [3000 1000]", got)
	}
}

// TestPoolRejects: a view that cannot be built is an error and leaves the pool as it was.
// Duplicate targets are not among them: config validation rejects those as written, and the
// pool merges addresses that DNS names resolve to twice (TestPoolMergesDuplicates).
func TestPoolRejects(t *testing.T) {
	tests := []struct {
		name    string
		addrs   []string
		weights []int
		want    error // nil: any error
	}{
		{"bad weight", []string{"10.0.0.1:1"}, []int{0}, balance.ErrBadWeight},
		{"weight too large", []string{"10.0.0.1:1"}, []int{balance.MaxWeight + 1}, balance.ErrBadWeight},
		{"length mismatch", []string{"10.0.0.1:1"}, []int{1, 2}, nil},
		{"empty address", []string{""}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPool(Options{Name: "x"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			before, err := p.Upstream(Options{Name: "x", Targets: []string{"10.0.0.9:1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer before.Close()
			m := before.cur.Load().members[0]
			_, err = p.Upstream(Options{Name: "x", Targets: tt.addrs, Weights: tt.weights})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Upstream: got error %v, want %v", err, tt.want)
			}
			p.mu.Lock()
			kept, n := p.members["10.0.0.9:1"], len(p.members)
			p.mu.Unlock()
			if kept != m || n != 1 || m.target.Weight() != 1 {
				t.Error("failed Upstream changed the pool")
			}
		})
	}
}

// TestPoolMergesDuplicates: an address listed twice (two names resolving to it) is one target.
func TestPoolMergesDuplicates(t *testing.T) {
	p, err := NewPool(Options{Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u, err := p.Upstream(Options{Name: "d", Targets: []string{"10.0.0.1:1", "10.0.0.1:1"}})
	if err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	defer u.Close()
	if n := len(u.cur.Load().members); n != 1 {
		t.Errorf("view holds %d targets for one address, want 1", n)
	}
}
