package balance

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// pool returns targets with the given weights at distinct addresses.
func pool(weights ...int) []*Target {
	ts := make([]*Target, len(weights))
	for i, w := range weights {
		ts[i] = NewTarget(fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1), w)
	}
	return ts
}

func mustNew(t testing.TB, alg string, ts []*Target, opts Options) Balancer {
	t.Helper()
	b, err := New(alg, ts, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", alg, err)
	}
	return b
}

// canonical lists one name per algorithm, for tests that run over all of them.
var canonical = []string{RoundRobin, Random, LeastRequest, P2C, ConsistentHash}

// keyOf returns a distinct consistent-hash key per request number, like client addresses.
func keyOf(buf []byte, i int) []byte {
	return fmt.Appendf(buf[:0], "192.0.%d.%d", i/256, i%256)
}

// count picks n times and returns how often each target was chosen.
func count(t *testing.T, b Balancer, targets, n int) []int {
	t.Helper()
	got := make([]int, targets)
	var key []byte
	for i := range n {
		key = keyOf(key, i)
		idx := b.Pick(key, -1)
		if idx < 0 || idx >= targets {
			t.Fatalf("pick %d: got index %d, want 0..%d", i, idx, targets-1)
		}
		got[idx]++
	}
	return got
}

func TestNewRejects(t *testing.T) {
	dup := pool(1, 1)
	dup[1].Addr = dup[0].Addr
	tests := []struct {
		name    string
		alg     string
		targets []*Target
		opts    Options
		want    error
	}{
		{"unknown algorithm", "fastest", pool(1), Options{}, ErrUnknownAlgorithm},
		{"zero weight", RoundRobin, pool(1, 0), Options{}, ErrBadWeight},
		{"negative weight", P2C, pool(-3), Options{}, ErrBadWeight},
		{"weight above max", Random, pool(MaxWeight + 1), Options{}, ErrBadWeight},
		{"duplicate address", LeastRequest, dup, Options{}, ErrDuplicateTarget},
		{"bounded load below 1", ConsistentHash, pool(1), Options{HashBoundedLoad: 0.9}, ErrBadOption},
		{"bounded load NaN", ConsistentHash, pool(1), Options{HashBoundedLoad: math.NaN()}, ErrBadOption},
		{"negative replicas", ConsistentHash, pool(1), Options{HashReplicas: -1}, ErrBadOption},
		{"negative rtt", P2C, pool(1), Options{DefaultRTT: -time.Second}, ErrBadOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.alg, tt.targets, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: got error %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := New(RoundRobin, []*Target{nil}, Options{}); err == nil {
		t.Fatal("New with a nil target: got no error")
	}
}

func TestAliases(t *testing.T) {
	for _, alg := range Algorithms {
		if _, err := New(alg, pool(1, 2), Options{}); err != nil {
			t.Errorf("New(%q): %v", alg, err)
		}
	}
}

func TestNoTargets(t *testing.T) {
	for _, alg := range canonical {
		b := mustNew(t, alg, nil, Options{})
		if got := b.Pick([]byte("k"), -1); got != -1 {
			t.Errorf("%s: Pick on an empty pool = %d, want -1", alg, got)
		}
	}
}

// TestDeterministicDistribution checks the algorithms whose order is fixed: over 10,000 requests
// every target gets its exact share (to within the one partial period at the end).
func TestDeterministicDistribution(t *testing.T) {
	const n = 10_000
	tests := []struct {
		alg     string
		weights []int
	}{
		{RoundRobin, []int{1}},
		{RoundRobin, []int{1, 1, 1}},
		{RoundRobin, []int{5, 3, 2}},
		{RoundRobin, []int{3, 1}},
		{RoundRobin, []int{100, 1}},
		{WeightedRoundRobin, []int{2, 4, 6, 8}}, // gcd 2
		{LeastRequest, []int{1, 1, 1}},          // idle pool: ties go round robin
		{LeastRequest, []int{5, 3, 2}},
		{LeastRequest, []int{7, 1, 1, 1, 2, 3, 5, 1, 1, 2, 4, 1}}, // > leastScanMax: two choices
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.alg, tt.weights), func(t *testing.T) {
			b := mustNew(t, tt.alg, pool(tt.weights...), Options{})
			got := count(t, b, len(tt.weights), n)
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			for i, w := range tt.weights {
				want := float64(n) * float64(w) / float64(sum)
				if math.Abs(float64(got[i])-want) > 1 {
					t.Errorf("target %d (weight %d): got %d picks, want %.1f±1", i, w, got[i], want)
				}
			}
		})
	}
}

// TestRandomDistribution checks the algorithms that draw at random. Shares must be within 5% of
// the weights. They run 100,000 requests rather than 10,000: at 10,000 a 20% share has a
// standard deviation of 2% of itself, so a ±5% check would fail about one run in a hundred; at
// 100,000 the margin is eight standard deviations and the test cannot flake in practice.
func TestRandomDistribution(t *testing.T) {
	const n = 100_000
	for _, alg := range []string{Random, P2C} {
		for _, weights := range [][]int{{1, 1, 1}, {5, 3, 2}, {1, 9}, {4, 1, 1, 1, 1, 2, 3, 1, 1, 5}} {
			t.Run(fmt.Sprint(alg, weights), func(t *testing.T) {
				b := mustNew(t, alg, pool(weights...), Options{})
				got := count(t, b, len(weights), n)
				checkShares(t, got, weights, n, 0.05)
			})
		}
	}
}

func checkShares(t *testing.T, got, weights []int, n int, tol float64) {
	t.Helper()
	sum := 0
	for _, w := range weights {
		sum += w
	}
	for i, w := range weights {
		want := float64(n) * float64(w) / float64(sum)
		if d := math.Abs(float64(got[i])-want) / want; d > tol {
			t.Errorf("target %d (weight %d): got %d picks, want %.0f ±%.0f%% (off by %.1f%%)", i, w, got[i], want, 100*tol, 100*d)
		}
	}
}

// TestAliasTableExact checks that the alias tables encode the weights exactly, independent of
// any random draw: each target's probability summed over the columns equals its share.
func TestAliasTableExact(t *testing.T) {
	for _, weights := range [][]int{{1}, {1, 1}, {5, 3, 2}, {1, 1000}, {7, 1, 1, 1, 2, 3, 5, 1, 1, 2, 4, 1}} {
		s := newSet(pool(weights...))
		n := float64(len(s.keep))
		got := make([]float64, len(weights))
		for col := range s.keep {
			keep := float64(s.keep[col]) / (1 << 32)
			got[col] += keep / n
			got[s.alias[col]] += (1 - keep) / n
		}
		sum := 0
		for _, w := range weights {
			sum += w
		}
		for i, w := range weights {
			if want := float64(w) / float64(sum); math.Abs(got[i]-want) > 1e-9 {
				t.Errorf("weights %v: target %d probability %v, want %v", weights, i, got[i], want)
			}
		}
	}
}

// TestScheduleScaling checks that weights too fine for the schedule keep their ratios.
func TestScheduleScaling(t *testing.T) {
	weights := []int{MaxWeight, MaxWeight - 1, 1, 3}
	s := newSet(pool(weights...))
	if len(s.sched) > maxSchedule+len(weights) {
		t.Fatalf("schedule length %d, want at most %d", len(s.sched), maxSchedule+len(weights))
	}
	b := &roundRobin{s}
	got := count(t, b, len(weights), 2*len(s.sched))
	// The two heavy targets keep their ratio to within the scaling's rounding.
	if r := float64(got[0]) / float64(got[1]); math.Abs(r-1) > 0.001 {
		t.Errorf("heavy targets' ratio %v, want 1±0.001", r)
	}
	if got[2] == 0 || got[3] == 0 {
		t.Errorf("light targets got %d and %d picks, want some", got[2], got[3])
	}
}

// TestScheduleSmooth checks that a heavy target's turns are spread out, not sent back to back.
func TestScheduleSmooth(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int32
	}{
		{[]int{1, 1, 1}, []int32{0, 1, 2}},
		{[]int{5, 3, 2}, []int32{0, 1, 2, 0, 0, 1, 0, 2, 1, 0}},
		{[]int{3, 1}, []int32{0, 0, 1, 0}},
	}
	for _, tt := range tests {
		s := newSet(pool(tt.weights...))
		if fmt.Sprint(s.sched) != fmt.Sprint(tt.want) {
			t.Errorf("weights %v: got schedule %v, want %v", tt.weights, s.sched, tt.want)
		}
	}
}

func TestUnavailableNeverPicked(t *testing.T) {
	for _, alg := range canonical {
		for _, n := range []int{4, 20} {
			t.Run(fmt.Sprint(alg, "/", n), func(t *testing.T) {
				weights := make([]int, n)
				for i := range weights {
					weights[i] = i%4 + 1
				}
				ts := pool(weights...)
				for i := range ts {
					if i%2 == 1 {
						ts[i].SetAvailable(false)
					}
				}
				b := mustNew(t, alg, ts, Options{})
				got := count(t, b, n, 4000)
				for i := 1; i < n; i += 2 {
					if got[i] != 0 {
						t.Errorf("unavailable target %d: got %d picks, want 0", i, got[i])
					}
				}
			})
		}
	}
}

// TestRoundRobinSkipsExactly checks that a target that is down hands its share to the others in
// proportion to their weights, not all to its neighbour.
func TestRoundRobinSkipsExactly(t *testing.T) {
	ts := pool(5, 3, 2)
	ts[0].SetAvailable(false)
	got := count(t, mustNew(t, RoundRobin, ts, Options{}), 3, 10_000)
	if want := []int{0, 6000, 4000}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v picks, want %v", got, want)
	}
}

func TestAllUnavailable(t *testing.T) {
	for _, alg := range canonical {
		for _, n := range []int{1, 3, 50} {
			ts := pool(make([]int, n)...)
			for _, tg := range ts {
				tg.weight.Store(1)
				tg.SetAvailable(false)
			}
			b := mustNew(t, alg, ts, Options{})
			for i := range 100 {
				if got := b.Pick(fmt.Appendf(nil, "k%d", i), -1); got != -1 {
					t.Fatalf("%s with %d targets all down: Pick = %d, want -1", alg, n, got)
				}
			}
			ts[n-1].SetAvailable(true)
			if got := b.Pick([]byte("k"), -1); got != n-1 {
				t.Errorf("%s with only target %d up: Pick = %d, want %d", alg, n-1, got, n-1)
			}
		}
	}
}

func TestExclude(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		down    []int
		exclude int
		want    int // the only acceptable answer; -2 means "anything but exclude"
	}{
		{"two targets", []int{1, 1}, nil, 0, 1},
		{"heavy excluded", []int{100, 1}, nil, 0, 1},
		{"many targets", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, nil, 3, -2},
		{"only target", []int{1}, nil, 0, -1},
		{"other is down", []int{1, 1}, []int{1}, 0, -1},
		{"out of range ignored", []int{1}, nil, 7, 0},
	}
	for _, alg := range canonical {
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				ts := pool(tt.weights...)
				for _, d := range tt.down {
					ts[d].SetAvailable(false)
				}
				b := mustNew(t, alg, ts, Options{})
				var key []byte
				for i := range 1000 {
					key = keyOf(key, i)
					got := b.Pick(key, tt.exclude)
					if (tt.want == -2 && (got == tt.exclude || got < 0)) || (tt.want != -2 && got != tt.want) {
						t.Fatalf("Pick(%q, %d) = %d, want %d", key, tt.exclude, got, tt.want)
					}
				}
			})
		}
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	t.Run("full scan", func(t *testing.T) {
		ts := pool(1, 1, 1)
		for range 5 {
			ts[0].Begin()
			ts[2].Begin()
		}
		got := count(t, mustNew(t, LeastRequest, ts, Options{}), 3, 1000)
		if want := []int{0, 1000, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got %v picks, want %v", got, want)
		}
	})
	t.Run("weights divide load", func(t *testing.T) {
		// 4 in flight on a weight-4 target is as loaded as 1 on a weight-1 target; 3 is less.
		ts := pool(4, 1)
		for range 3 {
			ts[0].Begin()
		}
		ts[1].Begin()
		if got := mustNew(t, LeastRequest, ts, Options{}).Pick(nil, -1); got != 0 {
			t.Errorf("Pick = %d, want 0", got)
		}
	})
	t.Run("two choices", func(t *testing.T) {
		// Half of 20 targets busy: the round-robin candidate is busy half the time and the random
		// one then is busy 9 times in 19, so 1 - ½·9/19 ≈ 76% of picks go to idle targets; a
		// balancer blind to load would give 50%.
		ts := pool(make([]int, 20)...)
		for i, tg := range ts {
			tg.weight.Store(1)
			if i%2 == 0 {
				for range 10 {
					tg.Begin()
				}
			}
		}
		got := count(t, mustNew(t, LeastRequest, ts, Options{}), 20, 10_000)
		idle := 0
		for i := 1; i < 20; i += 2 {
			idle += got[i]
		}
		t.Logf("idle targets got %d of 10000 picks", idle)
		if idle < 7000 {
			t.Errorf("idle targets got %d of 10000 picks, want at least 7000", idle)
		}
	})
	t.Run("closed loop", func(t *testing.T) {
		// Target 0 never finishes; the others finish at once. It must end with few requests.
		ts := pool(1, 1, 1)
		b := mustNew(t, LeastRequest, ts, Options{})
		for range 1000 {
			i := b.Pick(nil, -1)
			start := ts[i].Begin()
			if i != 0 {
				ts[i].End(start, false)
			}
		}
		if got := ts[0].InFlight(); got > 1 {
			t.Errorf("stuck target holds %d requests, want at most 1", got)
		}
	})
}

func TestP2CAvoidsSlowTarget(t *testing.T) {
	now := nanotime()
	tests := []struct {
		name     string
		setup    func(ts []*Target)
		maxShare float64 // of target 0
		minShare float64
	}{
		{"high latency", func(ts []*Target) {
			ts[0].observe(float64(100*time.Millisecond), false, now)
			ts[1].observe(float64(time.Millisecond), false, now)
			ts[2].observe(float64(time.Millisecond), false, now)
		}, 0, 0},
		{"many in flight", func(ts []*Target) {
			for range 50 {
				ts[0].Begin()
			}
		}, 0, 0},
		{"latency decayed", func(ts []*Target) {
			// A minute-old 100 ms peak has decayed to 0.25 ms (e^-6), below the others' 1 ms:
			// the target is tried again, and preferred whenever it is drawn.
			ts[0].observe(float64(100*time.Millisecond), false, now-int64(time.Minute))
			ts[1].observe(float64(time.Millisecond), false, now)
			ts[2].observe(float64(time.Millisecond), false, now)
		}, 1, 0.6},
		{"failures", func(ts []*Target) {
			for _, tg := range ts {
				tg.observe(float64(time.Millisecond), false, now)
			}
			// Fast failures must not make a target look fast.
			ts[0].observe(float64(10*time.Microsecond), true, now)
		}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := pool(1, 1, 1)
			tt.setup(ts)
			got := count(t, mustNew(t, P2C, ts, Options{}), 3, 10_000)
			share := float64(got[0]) / 10_000
			if share > tt.maxShare || share < tt.minShare {
				t.Errorf("target 0 got share %.3f (picks %v), want %.2f..%.2f", share, got, tt.minShare, tt.maxShare)
			}
		})
	}
}

// TestP2CSkewsUnderLoad runs a closed loop where target 0 is ten times slower than the others:
// in-flight requests finish after a simulated latency, and p2c must send it far less than the
// third a load-blind balancer would.
func TestP2CSkewsUnderLoad(t *testing.T) {
	ts := pool(1, 1, 1)
	b := mustNew(t, P2C, ts, Options{})
	lat := []int64{int64(10 * time.Millisecond), int64(time.Millisecond), int64(time.Millisecond)}
	type req struct {
		target int
		done   int64
	}
	var open []req
	clock := nanotime()
	got := make([]int, 3)
	for range 10_000 {
		clock += int64(100 * time.Microsecond) // 10,000 requests a second
		kept := open[:0]
		for _, r := range open {
			if r.done <= clock {
				ts[r.target].inflight.Add(-1)
				ts[r.target].observe(float64(lat[r.target]), false, r.done)
			} else {
				kept = append(kept, r)
			}
		}
		open = kept
		i := b.Pick(nil, -1)
		got[i]++
		ts[i].inflight.Add(1)
		open = append(open, req{i, clock + lat[i]})
	}
	t.Logf("picks %v", got)
	if share := float64(got[0]) / 10_000; share > 0.15 {
		t.Errorf("slow target got share %.3f (picks %v), want at most 0.15", share, got)
	}
}

func TestPeakEWMA(t *testing.T) {
	const ms = float64(time.Millisecond)
	tau := int64(decay)
	type sample struct {
		lat    float64
		failed bool
		at     int64
	}
	tests := []struct {
		name    string
		samples []sample
		readAt  int64
		want    float64
	}{
		{"first sample", []sample{{5 * ms, false, 1}}, 1, 5 * ms},
		{"peak jumps up", []sample{{5 * ms, false, 1}, {50 * ms, false, 2}}, 2, 50 * ms},
		{"lower sample at once barely moves", []sample{{50 * ms, false, 1}, {5 * ms, false, 1}}, 1, 50 * ms},
		// After one time constant the old value weighs 1/e and is decayed by it; the new one 1-1/e.
		{"lower sample after tau", []sample{{50 * ms, false, 1}, {5 * ms, false, 1 + tau}}, 1 + tau, 50*ms/math.E + 5*ms*(1-1/math.E)},
		{"decays while idle", []sample{{50 * ms, false, 1}}, 1 + 2*tau, 50 * ms / (math.E * math.E)},
		{"failure counts double", []sample{{10 * ms, false, 1}, {1 * ms, true, 1}}, 1, 20 * ms},
		{"slow failure counts as is", []sample{{10 * ms, false, 1}, {80 * ms, true, 1}}, 1, 80 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tg Target
			for _, s := range tt.samples {
				tg.observe(s.lat, s.failed, s.at)
			}
			got, ok := tg.latency(tt.readAt)
			if !ok || math.Abs(got-tt.want) > 1e-6*tt.want {
				t.Errorf("got %v (sampled %v), want %v", got, ok, tt.want)
			}
		})
	}
}

func TestBeginEnd(t *testing.T) {
	tg := NewTarget("a:1", 1)
	if tg.EWMA() != 0 || tg.InFlight() != 0 || !tg.Available() || tg.Weight() != 1 {
		t.Fatalf("new target: ewma %v, in flight %d, available %v, weight %d; want 0, 0, true, 1",
			tg.EWMA(), tg.InFlight(), tg.Available(), tg.Weight())
	}
	s1, s2 := tg.Begin(), tg.Begin()
	if got := tg.InFlight(); got != 2 {
		t.Errorf("after two Begin: in flight %d, want 2", got)
	}
	tg.End(s1, false)
	tg.End(s2, true)
	if got := tg.InFlight(); got != 0 {
		t.Errorf("after two End: in flight %d, want 0", got)
	}
	if tg.EWMA() <= 0 {
		t.Errorf("after End: EWMA %v, want > 0", tg.EWMA())
	}
	tg.SetAvailable(false)
	if tg.Available() {
		t.Error("SetAvailable(false): still available")
	}
}

// TestZeroAllocs proves the hot path allocates nothing: every Pick, in the fast and the slow
// paths (targets down, exclusions, consistent_hash over its bound), and Begin/End.
func TestZeroAllocs(t *testing.T) {
	for _, alg := range canonical {
		for _, n := range []int{3, 100} {
			weights := make([]int, n)
			for i := range weights {
				weights[i] = i%3 + 1
			}
			ts := pool(weights...)
			ts[1].SetAvailable(false)
			for range 5 {
				ts[0].Begin()
			}
			b := mustNew(t, alg, ts, Options{})
			key := []byte("203.0.113.7")
			i := 0
			got := testing.AllocsPerRun(1000, func() {
				i++
				b.Pick(key, i%3-1)
				b.Pick(nil, -1)
			})
			if got != 0 {
				t.Errorf("%s/%d: Pick allocates %v times, want 0", alg, n, got)
			}
		}
	}
	tg := NewTarget("a:1", 1)
	if got := testing.AllocsPerRun(1000, func() { tg.End(tg.Begin(), false) }); got != 0 {
		t.Errorf("Begin/End allocates %v times, want 0", got)
	}
}

// TestP2CLessMatchesCost checks the clock-free comparison against costs decayed to a common now.
func TestP2CLessMatchesCost(t *testing.T) {
	const ms = float64(time.Millisecond)
	// A present an hour after the epoch leaves room for stamps hours old; less never reads it,
	// which is the point, so the reference costs are simply decayed to it.
	now := nanotime() + int64(4*time.Hour)
	type state struct {
		lat      float64 // 0: no sample
		age      time.Duration
		inflight int64
	}
	tests := []struct {
		name string
		a, b state
	}{
		{"same age, faster", state{1 * ms, 0, 0}, state{2 * ms, 0, 0}},
		{"same age, busier", state{1 * ms, 0, 5}, state{2 * ms, 0, 1}},
		{"old peak decayed", state{100 * ms, time.Minute, 0}, state{1 * ms, 0, 0}},
		{"recent peak", state{100 * ms, time.Second, 0}, state{1 * ms, 0, 0}},
		{"hours apart", state{100 * ms, 3 * time.Hour, 3}, state{1 * ms, 0, 0}},
		{"hours apart, other way", state{1 * ms, 0, 0}, state{100 * ms, 3 * time.Hour, 3}},
		{"no sample vs fast", state{0, 0, 0}, state{1 * ms, 0, 0}},
		{"no sample vs slow", state{0, 0, 0}, state{100 * ms, 0, 0}},
		{"neither sampled, busier", state{0, 0, 2}, state{0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := pool(1, 1)
			for i, s := range []state{tt.a, tt.b} {
				if s.lat > 0 {
					ts[i].observe(s.lat, false, now-int64(s.age))
				}
				ts[i].inflight.Store(s.inflight)
			}
			b := mustNew(t, P2C, ts, Options{}).(*p2c)
			for _, pair := range [][2]int{{0, 1}, {1, 0}} {
				i, j := pair[0], pair[1]
				ci, cj := b.pairCost(i, j, now)
				want := ci < cj
				if got := b.less(i, j); got != want {
					t.Errorf("less(%d, %d) = %v, want %v (costs %v, %v)", i, j, got, want, ci, cj)
				}
			}
		})
	}
}

func TestExpDecay(t *testing.T) {
	for _, x := range []float64{0, 1e-6, -1e-4, 0.01, -0.0156, 0.0157, -1, 3, 800} {
		got, want := expDecay(x), math.Exp(x)
		if math.Abs(got-want) > 1e-11*want && !(math.IsInf(got, 1) && math.IsInf(want, 1)) {
			t.Errorf("expDecay(%v) = %v, want %v", x, got, want)
		}
	}
}

// TestP2CNewTarget: a target with no sample yet is compared as if it were as fast as its peer
// (at most DefaultRTT), so it is neither starved nor flooded.
func TestP2CNewTarget(t *testing.T) {
	const ms = float64(time.Millisecond)
	now := nanotime()
	tests := []struct {
		name              string
		peerLat           float64
		newLoad, peerLoad int64
		newLess, peerLess bool
	}{
		{"fast peer, both idle: a tie", 1 * ms, 0, 0, false, false},
		{"slow peer: the new one is assumed DefaultRTT", 100 * ms, 0, 0, true, false},
		{"new one busy", 1 * ms, 3, 0, false, true},
		{"peer busy", 1 * ms, 0, 2, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := pool(1, 1)
			ts[1].observe(tt.peerLat, false, now)
			ts[0].inflight.Store(tt.newLoad)
			ts[1].inflight.Store(tt.peerLoad)
			b := mustNew(t, P2C, ts, Options{}).(*p2c)
			if got := b.less(0, 1); got != tt.newLess {
				t.Errorf("less(new, peer) = %v, want %v", got, tt.newLess)
			}
			if got := b.less(1, 0); got != tt.peerLess {
				t.Errorf("less(peer, new) = %v, want %v", got, tt.peerLess)
			}
		})
	}
	// Two sampled fast targets and a new one: the new one gets traffic at once.
	ts := pool(1, 1, 1)
	for _, tg := range ts[:2] {
		tg.End(tg.Begin(), false)
	}
	got := count(t, mustNew(t, P2C, ts, Options{}), 3, 3000)
	if got[2] < 300 {
		t.Errorf("new target got %d of 3000 picks, want a fair share", got[2])
	}
}

// TestEstimateBounded: failures in quick succession double the estimate each time; it stops at
// maxEstimate instead of overflowing, and decays from there as any estimate does.
func TestEstimateBounded(t *testing.T) {
	var tg Target
	now := int64(1)
	for range 200 {
		now += int64(time.Millisecond)
		tg.observe(float64(time.Millisecond), true, now)
	}
	got, _ := tg.latency(now)
	if got != maxEstimate {
		t.Fatalf("estimate after 200 quick failures = %v, want the cap %v", time.Duration(got), time.Duration(maxEstimate))
	}
	later, _ := tg.latency(now + int64(decay))
	if later >= got || later <= 0 {
		t.Fatalf("estimate one decay later = %v, want it lower than %v and positive", time.Duration(later), time.Duration(got))
	}
}
