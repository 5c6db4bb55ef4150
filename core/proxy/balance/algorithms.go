package balance

import "math"

// roundRobin serves the smooth weighted schedule from one shared atomic counter: lock-free, and
// exact (each target gets its weight's share of every period) whenever targets are available.
type roundRobin struct{ *set }

func (b *roundRobin) Pick(_ []byte, exclude int) int { return b.nextRR(exclude) }

// random draws in proportion to weight; it keeps no shared state, so it scales with cores
// where a round-robin counter's cache line would bounce between them.
type random struct{ *set }

func (b *random) Pick(_ []byte, exclude int) int { return b.set.random(exclude, -1) }

// leastScanMax is the pool size up to which least_request compares every target; above it,
// comparing two candidates (Envoy's default) keeps Pick O(1) and avoids the herd that forms when
// every concurrent Pick sees the same global minimum.
const leastScanMax = 8

// leastRequest picks the target with the fewest in-flight requests per unit weight, breaking
// ties in smooth weighted round-robin order, as nginx's least_conn does: an idle pool is served
// exactly by weight, a loaded one drifts towards in-flight counts proportional to weight.
type leastRequest struct{ *set }

func (b *leastRequest) Pick(_ []byte, exclude int) int {
	best := b.nextRR(exclude)
	if best < 0 {
		return -1
	}
	n := len(b.targets)
	if n <= leastScanMax {
		bl, bw := b.targets[best].inflight.Load(), b.weights[best]
		for k := 1; k < n; k++ {
			i := best + k
			if i >= n {
				i -= n
			}
			if !b.ok(i, exclude) {
				continue
			}
			// Compare in-flight/weight by cross-multiplying, strictly, so ties keep the
			// round-robin candidate.
			if l, w := b.targets[i].inflight.Load(), b.weights[i]; l*bw < bl*w {
				best, bl, bw = i, l, w
			}
		}
		return best
	}
	other := b.set.random(exclude, best)
	if other >= 0 && b.targets[other].inflight.Load()*b.weights[best] < b.targets[best].inflight.Load()*b.weights[other] {
		return other
	}
	return best
}

// p2c draws two distinct targets at random by weight and keeps the one with the lower cost,
// peak-EWMA latency × (in-flight + 1), the load metric of Finagle and Linkerd. Two random
// choices get most of the benefit of comparing all targets while never herding concurrent picks
// onto one target, and the latency term steers traffic away from a slow target before its
// in-flight count grows.
type p2c struct {
	*set
	defaultRTT float64
}

func (b *p2c) Pick(_ []byte, exclude int) int {
	first := b.set.random(exclude, -1)
	if first < 0 {
		return -1
	}
	second := b.set.random(exclude, first)
	if second < 0 {
		return first
	}
	// Ties keep the first draw, so an idle pool is served in proportion to weight.
	if b.less(second, first) {
		return second
	}
	return first
}

// less reports whether target i costs less than target j. Both estimates decay from their own
// stamps to the same present, so the present cancels out of the comparison:
//
//	vi·e^-(now-si)/τ·li < vj·e^-(now-sj)/τ·lj  ⟺  vi·li·e^(si-sj)/τ < vj·lj
//
// which spares a clock read (tens of nanoseconds on some virtual machines) and one exponential,
// unless a target has no sample yet.
func (b *p2c) less(i, j int) bool {
	ti, tj := b.targets[i], b.targets[j]
	si, sj := ti.stamp.Load(), tj.stamp.Load()
	if si == 0 || sj == 0 {
		ci, cj := b.pairCost(i, j, nanotime())
		return ci < cj
	}
	vi := math.Float64frombits(ti.ewma.Load()) * float64(ti.inflight.Load()+1)
	vj := math.Float64frombits(tj.ewma.Load()) * float64(tj.inflight.Load()+1)
	return vi*expDecay(float64(si-sj)/float64(decay)) < vj
}

// expDecay is e^x. Under steady traffic two targets' stamps lie milliseconds apart, |x| ≈ 1e-4,
// and below 1/64 a quartic Taylor polynomial is exact to 1e-11 and several times cheaper than
// math.Exp.
// Stamps hours apart overflow to +Inf, which still orders correctly: the older estimate has
// decayed to nothing.
func expDecay(x float64) float64 {
	if x > -1.0/64 && x < 1.0/64 {
		return 1 + x*(1+x/2*(1+x/3*(1+x/4)))
	}
	return math.Exp(x)
}

// pairCost returns the costs of targets i and j at now. A target with no latency sample yet is
// assumed as fast as the one it is compared with, or DefaultRTT when that is faster: assuming
// DefaultRTT alone would starve a new target for as long as its peers answer faster than that,
// which under light load is forever. Its in-flight count still keeps it from being flooded
// before its first response.
func (b *p2c) pairCost(i, j int, now int64) (float64, float64) {
	ti, tj := b.targets[i], b.targets[j]
	li, oki := ti.latency(now)
	lj, okj := tj.latency(now)
	switch {
	case !oki && !okj:
		li, lj = b.defaultRTT, b.defaultRTT
	case !oki:
		li = min(lj, b.defaultRTT)
	case !okj:
		lj = min(li, b.defaultRTT)
	}
	return li * float64(ti.inflight.Load()+1), lj * float64(tj.inflight.Load()+1)
}
