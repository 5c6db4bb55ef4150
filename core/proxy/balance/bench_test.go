package balance

import (
	"fmt"
	"testing"
)

// BenchmarkPick measures one Pick per algorithm on idle pools of 3 and 100 targets with mixed
// weights; consistent_hash hashes a client-IP-sized key. The /loaded variants hold requests in
// flight and give every target a latency sample, so that least_request, p2c and
// consistent_hash take their load-aware paths (and p2c its clock-free comparison).
func BenchmarkPick(b *testing.B) {
	key := []byte("203.0.113.195")
	for _, alg := range canonical {
		for _, n := range []int{3, 100} {
			for _, loaded := range []bool{false, true} {
				name := fmt.Sprintf("%s/targets=%d", alg, n)
				if loaded {
					name += "/loaded"
				}
				b.Run(name, func(b *testing.B) {
					weights := make([]int, n)
					for i := range weights {
						weights[i] = i%3 + 1
					}
					ts := pool(weights...)
					if loaded {
						now := nanotime()
						for i, tg := range ts {
							for range i%5 + 1 {
								tg.Begin()
							}
							tg.observe(float64((i%7+1)*1_000_000), false, now-int64(i)*1_000_000)
						}
					}
					bl := mustNew(b, alg, ts, Options{})
					b.ReportAllocs()
					for b.Loop() {
						bl.Pick(key, -1)
					}
				})
			}
		}
	}
}

// BenchmarkPickParallel shows how each algorithm scales across cores; round_robin's shared
// counter is the one contended cache line.
func BenchmarkPickParallel(b *testing.B) {
	key := []byte("203.0.113.195")
	for _, alg := range canonical {
		b.Run(alg, func(b *testing.B) {
			bl := mustNew(b, alg, pool(1, 2, 3, 1, 2, 3, 1, 2, 3, 1), Options{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bl.Pick(key, -1)
				}
			})
		})
	}
}

func BenchmarkBeginEnd(b *testing.B) {
	tg := NewTarget("10.0.0.1:80", 1)
	b.ReportAllocs()
	for b.Loop() {
		tg.End(tg.Begin(), false)
	}
}
