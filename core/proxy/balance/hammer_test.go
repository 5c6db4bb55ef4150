package balance

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestHammer runs Pick with Begin/End from 8 goroutines per algorithm while health flips and
// reloads rebuild the balancer over the same registry. Run it with -race. Afterwards every
// target must be back to zero in flight and no Pick may have returned a target that was
// excluded or outside the pool.
func TestHammer(t *testing.T) {
	const workers, iters = 8, 2000
	addrs := make([]string, 12)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.1.0.%d:80", i+1)
	}
	for _, alg := range canonical {
		t.Run(alg, func(t *testing.T) {
			r := NewRegistry()
			ts, err := r.Targets(addrs, nil)
			if err != nil {
				t.Fatal(err)
			}
			type snap struct {
				b  Balancer
				ts []*Target
			}
			var cur atomic.Pointer[snap]
			cur.Store(&snap{mustNew(t, alg, ts, Options{}), ts})

			stop := make(chan struct{})
			var side sync.WaitGroup
			side.Go(func() { // health checker and reloader
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					s := cur.Load()
					s.ts[n%len(s.ts)].SetAvailable(n%3 != 0)
					if n%50 == 0 {
						// Reload with one address fewer and new weights; the rest keep state.
						w := make([]int, len(addrs)-1)
						for i := range w {
							w[i] = (i+n)%4 + 1
						}
						nts, err := r.Targets(addrs[n%2:len(addrs)-1+n%2], w)
						if err != nil {
							t.Error(err)
							return
						}
						b, err := New(alg, nts, Options{})
						if err != nil {
							t.Error(err)
							return
						}
						cur.Store(&snap{b, nts})
					}
				}
			})

			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					var key []byte
					for i := range iters {
						s := cur.Load()
						key = keyOf(key, i*workers+g)
						ex := i%5 - 1
						idx := s.b.Pick(key, ex)
						if idx == -1 {
							continue // everything down or excluded at this instant
						}
						if idx < 0 || idx >= len(s.ts) || idx == ex {
							t.Errorf("Pick(%q, %d) = %d with %d targets", key, ex, idx, len(s.ts))
							return
						}
						tg := s.ts[idx]
						start := tg.Begin()
						tg.End(start, i%7 == 0)
					}
				})
			}
			wg.Wait()
			close(stop)
			side.Wait()
			for _, a := range addrs {
				if tg, ok := r.Lookup(a); ok && tg.InFlight() != 0 {
					t.Errorf("%s: %d in flight after all requests ended", a, tg.InFlight())
				}
			}
		})
	}
}
