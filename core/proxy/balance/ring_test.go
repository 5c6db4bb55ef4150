package balance

import (
	"fmt"
	"hash/fnv"
	"math"
	"testing"
)

const ringKeys = 10_000

// owners maps each of ringKeys keys to the address of the target b picks.
func owners(t *testing.T, b Balancer, ts []*Target) []string {
	t.Helper()
	out := make([]string, ringKeys)
	var key []byte
	for k := range out {
		key = keyOf(key, k)
		i := b.Pick(key, -1)
		if i < 0 {
			t.Fatalf("key %q: no target", key)
		}
		out[k] = ts[i].Addr
	}
	return out
}

func TestRingSameKeySameTarget(t *testing.T) {
	ts := pool(1, 1, 1, 1, 1)
	first := owners(t, mustNew(t, ConsistentHash, ts, Options{}), ts)
	// A fresh balancer over fresh targets with the same addresses, listed in another order,
	// must agree: positions depend on addresses only.
	again := pool(1, 1, 1, 1, 1)
	again[0], again[4] = again[4], again[0]
	second := owners(t, mustNew(t, ConsistentHash, again, Options{}), again)
	for k := range first {
		if first[k] != second[k] {
			t.Fatalf("key %d: %s, then %s after rebuilding", k, first[k], second[k])
		}
	}
}

// TestRingRemoveTarget removes each of N targets in turn. Only the removed target's keys may
// move. Each removal may move at most 1/N of the keys plus 30%: with 160 points per target a
// target's share of the ring varies by about 1/√160 ≈ 8% of its fair share, so 30% is almost
// four standard deviations. Summed over all N removals exactly every key moves once, which
// pins the average at exactly 1/N.
func TestRingRemoveTarget(t *testing.T) {
	for _, n := range []int{3, 5, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ts := pool(make([]int, n)...)
			for _, tg := range ts {
				tg.weight.Store(1)
			}
			before := owners(t, mustNew(t, ConsistentHash, ts, Options{}), ts)
			total, worst := 0, 0
			for r := range n {
				rest := append(append([]*Target(nil), ts[:r]...), ts[r+1:]...)
				after := owners(t, mustNew(t, ConsistentHash, rest, Options{}), rest)
				moved := 0
				for k := range before {
					if before[k] == after[k] {
						continue
					}
					moved++
					if before[k] != ts[r].Addr {
						t.Fatalf("removing %s moved key %d from %s to %s", ts[r].Addr, k, before[k], after[k])
					}
				}
				total += moved
				worst = max(worst, moved)
				if limit := ringKeys / n * 13 / 10; moved > limit {
					t.Errorf("removing target %d of %d moved %d keys, want at most %d", r, n, moved, limit)
				}
			}
			t.Logf("%d targets: most keys moved by one removal %d (1/N = %d)", n, worst, ringKeys/n)
			if total != ringKeys {
				t.Errorf("removals moved %d keys in all, want %d", total, ringKeys)
			}
		})
	}
}

func TestRingAddTarget(t *testing.T) {
	ts := pool(1, 1, 1, 1, 1)
	before := owners(t, mustNew(t, ConsistentHash, ts[:4], Options{}), ts[:4])
	after := owners(t, mustNew(t, ConsistentHash, ts, Options{}), ts)
	moved := 0
	for k := range before {
		if before[k] != after[k] {
			moved++
			if after[k] != ts[4].Addr {
				t.Fatalf("adding %s moved key %d from %s to %s", ts[4].Addr, k, before[k], after[k])
			}
		}
	}
	if limit := ringKeys / 5 * 13 / 10; moved > limit {
		t.Errorf("adding a fifth target moved %d keys, want at most %d", moved, limit)
	}
}

// TestRingWeights checks that shares follow weights. A ring's shares are fixed by where the
// points fall, not by chance per request; with ≥ 320 points per target the deviation is a few
// percent, so ±10% leaves room for any address set.
func TestRingWeights(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1}, {5, 3, 2}, {1, 4}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			ts := pool(weights...)
			got := count(t, mustNew(t, ConsistentHash, ts, Options{HashReplicas: 320}), len(weights), ringKeys)
			t.Logf("picks %v", got)
			checkShares(t, got, weights, ringKeys, 0.10)
		})
	}
}

// TestRingWeightChangeKeepsOthers checks that raising one target's weight moves keys only onto
// it: the other targets keep their points.
func TestRingWeightChangeKeepsOthers(t *testing.T) {
	ts := pool(2, 2, 2, 2)
	before := owners(t, mustNew(t, ConsistentHash, ts, Options{}), ts)
	ts[2].weight.Store(3)
	after := owners(t, mustNew(t, ConsistentHash, ts, Options{}), ts)
	for k := range before {
		if before[k] != after[k] && after[k] != ts[2].Addr {
			t.Fatalf("key %d moved from %s to %s, want moves only onto %s", k, before[k], after[k], ts[2].Addr)
		}
	}
}

func TestRingSkipsUnavailable(t *testing.T) {
	ts := pool(1, 1, 1, 1)
	b := mustNew(t, ConsistentHash, ts, Options{})
	key := []byte("198.51.100.9")
	home := b.Pick(key, -1)
	ts[home].SetAvailable(false)
	spill := b.Pick(key, -1)
	if spill == home || spill < 0 {
		t.Fatalf("home %d down: got %d, want another target", home, spill)
	}
	if got := b.Pick(key, -1); got != spill {
		t.Errorf("home down, second pick: got %d, want the same fallback %d", got, spill)
	}
	ts[home].SetAvailable(true)
	if got := b.Pick(key, -1); got != home {
		t.Errorf("home back up: got %d, want %d", got, home)
	}
}

// TestRingBoundedLoad holds requests for one hot key open. Without a bound they would all land
// on one target; with c = 1.25 no target may exceed ceil(1.25 × load / N).
func TestRingBoundedLoad(t *testing.T) {
	tests := []struct {
		name    string
		c       float64
		weights []int
		held    int
	}{
		{"default bound", 0, []int{1, 1, 1, 1}, 100},
		{"tight bound", 1, []int{1, 1, 1, 1}, 100},
		{"weighted", 1.25, []int{3, 1, 1, 1, 2}, 160},
		{"no bound", 1e9, []int{1, 1, 1, 1}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := pool(tt.weights...)
			b := mustNew(t, ConsistentHash, ts, Options{HashBoundedLoad: tt.c})
			key := []byte("hot-key")
			home := b.Pick(key, -1)
			for range tt.held {
				ts[b.Pick(key, -1)].Begin()
			}
			c := tt.c
			if c == 0 {
				c = DefaultHashBoundedLoad
			}
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			got := make([]int64, len(ts))
			for i, tg := range ts {
				got[i] = tg.InFlight()
				limit := int64(math.Ceil(c * float64(tt.held) * float64(tt.weights[i]) / float64(sum)))
				if got[i] > limit {
					t.Errorf("target %d holds %d requests, want at most %d", i, got[i], limit)
				}
			}
			if tt.c == 1e9 && got[home] != int64(tt.held) {
				t.Errorf("unbounded: home target holds %d of %d", got[home], tt.held)
			}
			t.Logf("in flight %v (home %d)", got, home)
			// Once the load drains, the key goes home again.
			for _, tg := range ts {
				tg.inflight.Store(0)
			}
			if got := b.Pick(key, -1); got != home {
				t.Errorf("after draining: got %d, want home %d", got, home)
			}
		})
	}
}

// TestRingEmptyKey checks that requests without a key spread over the pool.
func TestRingEmptyKey(t *testing.T) {
	got := make([]int, 4)
	b := mustNew(t, ConsistentHash, pool(1, 1, 1, 1), Options{})
	for range 4000 {
		got[b.Pick(nil, -1)]++
	}
	for i, g := range got {
		if g < 500 {
			t.Errorf("target %d got %d of 4000 keyless picks, want a fair share", i, g)
		}
	}
}

func TestHashBytesStable(t *testing.T) {
	// Pinned values: a change here remaps every consistent_hash key of every deployment, and
	// instances of different versions would disagree during a rolling upgrade.
	tests := []struct {
		in   string
		want uint64
	}{
		{"", 0xefd01f60ba992926},
		{"10.0.0.1", 0xc879e56ddc6c5c88},
		{"session=abc123", 0x91f10b40154f9101},
	}
	for _, tt := range tests {
		if got := hashBytes([]byte(tt.in)); got != tt.want {
			t.Errorf("hashBytes(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
		// The first stage is standard FNV-1a.
		f := fnv.New64a()
		f.Write([]byte(tt.in))
		if got, want := hashBytes([]byte(tt.in)), mix64(f.Sum64()); got != want {
			t.Errorf("hashBytes(%q) = %#x, want mix64(FNV-1a) = %#x", tt.in, got, want)
		}
	}
}

// TestRingSizeCapped checks that large weights shrink the points per unit of weight instead of
// growing the ring without bound, and that shares still follow the weights.
func TestRingSizeCapped(t *testing.T) {
	weights := []int{MaxWeight, MaxWeight / 2, MaxWeight / 2}
	ts := pool(weights...)
	r := mustNew(t, ConsistentHash, ts, Options{}).(*ring)
	if len(r.hashes) > maxRingPoints {
		t.Fatalf("ring has %d points, want at most %d", len(r.hashes), maxRingPoints)
	}
	checkShares(t, count(t, r, len(ts), ringKeys), weights, ringKeys, 0.10)
}
