package balance

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Algorithm names accepted by New, as written in an upstream's `balance:` setting.
const (
	// RoundRobin cycles through the targets in a smooth weighted order.
	RoundRobin = "round_robin"
	// WeightedRoundRobin is another name for RoundRobin, which already honours weights.
	WeightedRoundRobin = "weighted_round_robin"
	// Random picks a target at random in proportion to its weight.
	Random = "random"
	// LeastRequest picks the target with the fewest in-flight requests per unit weight.
	LeastRequest = "least_request"
	// LeastConn is another name for LeastRequest, the name nginx and HAProxy users know.
	LeastConn = "least_conn"
	// P2C compares two random targets on latency times load ("power of two choices").
	P2C = "p2c"
	// ConsistentHash maps a request key to a target on a hash ring, with bounded load.
	ConsistentHash = "consistent_hash"
)

// Algorithms lists every name New accepts, for config validation and error messages.
var Algorithms = []string{RoundRobin, WeightedRoundRobin, Random, LeastRequest, LeastConn, P2C, ConsistentHash}

// MaxWeight bounds a target's weight. Weights are relative, so the bound costs nothing in
// expressiveness and keeps every product in the balancers far from overflow.
const MaxWeight = 1 << 16

// Defaults for the zero Options.
const (
	// DefaultHashBoundedLoad lets a target take 25% more than its fair share of in-flight
	// requests before consistent_hash spills a key to the next target on the ring; the value
	// from Mirrokni, Thorup and Zadimoghaddam's evaluation and the one Envoy and HAProxy users
	// commonly pick.
	DefaultHashBoundedLoad = 1.25
	// DefaultHashReplicas is the number of ring points per unit of weight; 160 is Ketama's
	// choice and keeps each target's share of keys within a few percent of fair.
	DefaultHashReplicas = 160
	// DefaultRTT is the latency p2c assumes for a target that has not answered yet, Linkerd's
	// default: high enough that a new target is not flooded before its first response.
	DefaultRTT = 30 * time.Millisecond
)

// Errors returned by New, wrapped with what was being built.
var (
	ErrUnknownAlgorithm = errors.New("unknown load-balancing algorithm")
	ErrBadWeight        = errors.New("weight out of range")
	ErrDuplicateTarget  = errors.New("duplicate target address")
	ErrBadOption        = errors.New("invalid balancer option")
)

// Balancer picks a target for each request. Implementations are safe for concurrent use and
// allocate nothing per Pick.
type Balancer interface {
	// Pick returns the index, in the slice given to New, of an available target, or -1 when no
	// target is available (the caller answers 503 at once). key is the consistent_hash key
	// (client IP, header or cookie value); the other algorithms ignore it. exclude is the index
	// of a target to avoid, typically the one a retry just failed on, or -1: it is honoured
	// whenever another target is available and otherwise -1 is returned.
	Pick(key []byte, exclude int) int
}

// Options tunes the algorithms; the zero value selects the defaults.
type Options struct {
	// HashBoundedLoad is the factor c of consistent hashing with bounded loads: a target may hold
	// at most ceil(c × average) in-flight requests (weighted) before keys spill past it. It must
	// be at least 1; 0 means DefaultHashBoundedLoad. A very large value disables the bound.
	HashBoundedLoad float64
	// HashReplicas is the number of ring points per unit of weight; 0 means DefaultHashReplicas.
	HashReplicas int
	// DefaultRTT is p2c's latency estimate for a target with no sample yet; 0 means DefaultRTT.
	DefaultRTT time.Duration
}

// New builds a balancer over targets, reading their weights once. All the work (schedules,
// rings, tables) happens here so that Pick is a few loads and compares.
func New(algorithm string, targets []*Target, opts Options) (Balancer, error) {
	if opts.HashBoundedLoad == 0 {
		opts.HashBoundedLoad = DefaultHashBoundedLoad
	}
	if !(opts.HashBoundedLoad >= 1) { // also rejects NaN
		return nil, fmt.Errorf("new %s balancer: hash bounded load %v below 1: %w", algorithm, opts.HashBoundedLoad, ErrBadOption)
	}
	if opts.HashReplicas == 0 {
		opts.HashReplicas = DefaultHashReplicas
	}
	if opts.HashReplicas < 1 || opts.HashReplicas > maxRingPoints {
		return nil, fmt.Errorf("new %s balancer: hash replicas %d out of 1..%d: %w", algorithm, opts.HashReplicas, maxRingPoints, ErrBadOption)
	}
	if opts.DefaultRTT == 0 {
		opts.DefaultRTT = DefaultRTT
	}
	if opts.DefaultRTT < 0 {
		return nil, fmt.Errorf("new %s balancer: negative default rtt %v: %w", algorithm, opts.DefaultRTT, ErrBadOption)
	}
	if !slices.Contains(Algorithms, algorithm) {
		return nil, fmt.Errorf("new balancer %q (want one of %s): %w", algorithm, strings.Join(Algorithms, ", "), ErrUnknownAlgorithm)
	}
	seen := make(map[string]struct{}, len(targets))
	for i, t := range targets {
		if t == nil {
			return nil, fmt.Errorf("new %s balancer: target %d is nil", algorithm, i)
		}
		if _, dup := seen[t.Addr]; dup {
			return nil, fmt.Errorf("new %s balancer: target %q: %w", algorithm, t.Addr, ErrDuplicateTarget)
		}
		seen[t.Addr] = struct{}{}
		if err := checkWeight(t.Weight()); err != nil {
			return nil, fmt.Errorf("new %s balancer: target %q: %w", algorithm, t.Addr, err)
		}
	}
	if len(targets) == 0 {
		return none{}, nil
	}
	s := newSet(targets)
	switch algorithm {
	case RoundRobin, WeightedRoundRobin:
		return &roundRobin{s}, nil
	case Random:
		return &random{s}, nil
	case LeastRequest, LeastConn:
		return &leastRequest{s}, nil
	case P2C:
		return &p2c{set: s, defaultRTT: float64(opts.DefaultRTT)}, nil
	default: // ConsistentHash
		return newRing(s, opts.HashReplicas, opts.HashBoundedLoad), nil
	}
}

func checkWeight(w int) error {
	if w < 1 || w > MaxWeight {
		return fmt.Errorf("weight %d not in 1..%d: %w", w, MaxWeight, ErrBadWeight)
	}
	return nil
}

// none serves an upstream with no targets: every request gets the caller's 503.
type none struct{}

func (none) Pick([]byte, int) int { return -1 }

// probes is how many times a Pick redraws after landing on an unavailable or excluded target
// before it falls back to a linear scan. Redrawing (rather than stepping to the neighbour) keeps
// the skipped target's share spread over the others in proportion to their weights.
const probes = 8

// maxSchedule bounds the round-robin schedule. Weights whose reduced sum exceeds it are scaled
// down, which keeps ratios to within a fraction of a percent for any sensible config.
const maxSchedule = 1 << 16

// set is the state every balancer shares: the targets, their weights as read at build, a smooth
// weighted round-robin schedule, and an alias table for weighted random draws.
type set struct {
	targets []*Target
	weights []int64 // reduced by their gcd; only ratios matter to the users of this field
	sched   []int32 // one period of the smooth weighted order
	// alias table (Vose): column i is kept with probability keep[i]/2^32, else alias[i] is used.
	keep  []uint64
	alias []int32
	_     [64]byte // the round-robin counter is written by every request; keep it off the line above
	ctr   atomic.Uint64
	_     [56]byte
}

func newSet(targets []*Target) *set {
	n := len(targets)
	w := make([]int64, n)
	g := int64(0)
	for i, t := range targets {
		w[i] = int64(t.Weight())
		g = gcd(g, w[i])
	}
	sum := int64(0)
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum > maxSchedule {
		// Scale down, never below 1: a configured target must still receive traffic.
		old := sum
		sum = 0
		for i := range w {
			w[i] = max(1, w[i]*maxSchedule/old)
			sum += w[i]
		}
	}
	s := &set{targets: slices.Clone(targets), weights: w}
	s.sched = smoothSchedule(w, sum)
	s.keep, s.alias = aliasTable(w, sum)
	return s
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// smoothSchedule lays out one period in which target i appears w[i] times, each target's turns
// evenly spaced: turn j of target i is due at (j+½)/w[i] of the period, and turns are served in
// order of due time (ties by index). This spreads a heavy target's turns between the light ones
// instead of sending them back to back, like nginx's smooth weighted round robin, and builds in
// O(L log L) however many targets there are.
func smoothSchedule(w []int64, sum int64) []int32 {
	type turn struct {
		j, i int64 // turn j of target i
	}
	turns := make([]turn, 0, sum)
	for i, wi := range w {
		for j := range wi {
			turns = append(turns, turn{j, int64(i)})
		}
	}
	slices.SortFunc(turns, func(a, b turn) int {
		// (2ja+1)/(2wa) vs (2jb+1)/(2wb), cross-multiplied to stay exact in integers.
		l, r := (2*a.j+1)*w[b.i], (2*b.j+1)*w[a.i]
		switch {
		case l < r:
			return -1
		case l > r:
			return 1
		}
		return int(a.i - b.i)
	})
	sched := make([]int32, len(turns))
	for k, tn := range turns {
		sched[k] = int32(tn.i)
	}
	return sched
}

// aliasTable builds Vose's alias tables so that a weighted random draw costs one random number,
// whatever the number of targets. Integer arithmetic keeps the table exact.
func aliasTable(w []int64, sum int64) (keep []uint64, alias []int32) {
	n := int64(len(w))
	keep = make([]uint64, n)
	alias = make([]int32, n)
	p := make([]int64, n) // weight scaled so that the average column holds exactly sum
	var small, large []int32
	for i, wi := range w {
		p[i] = wi * n
		alias[i] = int32(i)
		if p[i] < sum {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		keep[s] = uint64(p[s]) << 32 / uint64(sum)
		alias[s] = l
		p[l] -= sum - p[s]
		if p[l] < sum {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left holds exactly sum (up to rounding) and always keeps its own column.
	for _, i := range small {
		keep[i] = 1 << 32
	}
	for _, i := range large {
		keep[i] = 1 << 32
	}
	return keep, alias
}

// ok reports whether target i may be picked now.
func (s *set) ok(i, exclude int) bool {
	return i != exclude && !s.targets[i].down.Load()
}

// nextRR returns the next available target in the smooth weighted order.
func (s *set) nextRR(exclude int) int {
	l := uint64(len(s.sched))
	var c uint64
	for range probes {
		c = s.ctr.Add(1) - 1
		if i := int(s.sched[c%l]); s.ok(i, exclude) {
			return i
		}
	}
	return s.scan(int(c%uint64(len(s.targets))), exclude, -1)
}

// draw returns a target index at random in proportion to weight; it may be unavailable.
func (s *set) draw() int {
	r := rand.Uint64()
	// High half picks the column (Lemire's multiply-shift, no division), low half the coin.
	col := int((r >> 32) * uint64(len(s.keep)) >> 32)
	if r&(1<<32-1) < s.keep[col] {
		return col
	}
	return int(s.alias[col])
}

// random returns an available target at random in proportion to weight, other than also.
func (s *set) random(exclude, also int) int {
	for range probes {
		if i := s.draw(); i != also && s.ok(i, exclude) {
			return i
		}
	}
	start, _ := bits.Mul64(rand.Uint64(), uint64(len(s.targets)))
	return s.scan(int(start), exclude, also)
}

// scan is the fallback when draws keep missing (most targets down or excluded): the first
// available target from start on, or -1.
func (s *set) scan(start, exclude, also int) int {
	n := len(s.targets)
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		if i != also && s.ok(i, exclude) {
			return i
		}
	}
	return -1
}

// mix64 is Murmur3's 64-bit finalizer: full avalanche, so nearby inputs land far apart on the
// ring.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
