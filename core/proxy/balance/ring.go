package balance

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
)

// maxRingPoints bounds a ring's size (12 bytes a point). Pools whose weights would need more
// get fewer points per unit of weight; that costs a little evenness, not correctness.
const maxRingPoints = 1 << 18

// ring is consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, 2017).
// Each target owns replicas × weight points on a 64-bit ring; a key goes to the owner of the
// first point at or after its hash, so removing a target moves only the keys it owned. To keep a
// hot key from melting its target, a target already holding ceil(c × average) in-flight
// requests (weighted, counting the one being placed) is passed over for the next owner along the
// ring; since the capacities add up to more than the load, someone always has room.
type ring struct {
	*set
	hashes []uint64 // sorted point positions
	owners []int32  // owners[k] is the target at hashes[k]
	raw    []int64  // configured weights: capacities follow them, not the reduced ones
	c      float64
}

func newRing(s *set, replicas int, c float64) *ring {
	r := &ring{set: s, c: c, raw: make([]int64, len(s.targets))}
	total := int64(0)
	for i, t := range s.targets {
		r.raw[i] = int64(t.Weight())
		total += r.raw[i]
	}
	// Points come from configured weights, not gcd-reduced ones: reducing would change an
	// unchanged target's points whenever another weight changes, and move its keys.
	perWeight := int64(replicas)
	if total*perWeight > maxRingPoints {
		perWeight = max(1, maxRingPoints/total)
	}
	type point struct {
		h     uint64
		owner int32
	}
	var pts []point
	var buf []byte
	for i, t := range s.targets {
		for k := range r.raw[i] * perWeight {
			// A point's position depends only on the address and its ordinal, so a target keeps
			// its points whatever else is in the pool.
			buf = binary.BigEndian.AppendUint64(append(append(buf[:0], t.Addr...), 0), uint64(k))
			pts = append(pts, point{hashBytes(buf), int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		// A 64-bit collision is improbable; break it by address so it is stable across reloads.
		return cmp.Compare(s.targets[a.owner].Addr, s.targets[b.owner].Addr)
	})
	r.hashes = make([]uint64, len(pts))
	r.owners = make([]int32, len(pts))
	for k, p := range pts {
		r.hashes[k], r.owners[k] = p.h, p.owner
	}
	return r
}

func (r *ring) Pick(key []byte, exclude int) int {
	var h uint64
	if len(key) == 0 {
		// No key (say, a missing cookie): spread such requests around the ring rather than
		// piling them all onto the owner of the empty key's hash.
		h = mix64(r.ctr.Add(1))
	} else {
		h = hashBytes(key)
	}
	pos, _ := slices.BinarySearch(r.hashes, h)
	if pos == len(r.hashes) {
		pos = 0
	}
	// An idle owner is always within bound (every capacity is at least 1), which spares the
	// load sum below on lightly loaded pools.
	if i := int(r.owners[pos]); r.ok(i, exclude) && r.targets[i].inflight.Load() == 0 {
		return i
	}

	// The average is over available targets: the ones that are down carry nothing and their
	// share of capacity must go to the rest.
	var load, weight int64
	for i, t := range r.targets {
		if !t.down.Load() {
			load += t.inflight.Load()
			weight += r.raw[i]
		}
	}
	if weight == 0 {
		return -1
	}
	perWeight := r.c * float64(load+1) / float64(weight)
	first := -1
	for k := range len(r.hashes) {
		p := pos + k
		if p >= len(r.hashes) {
			p -= len(r.hashes)
		}
		i := int(r.owners[p])
		if !r.ok(i, exclude) {
			continue
		}
		if float64(r.targets[i].inflight.Load()) < math.Ceil(perWeight*float64(r.raw[i])) {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	// Only the excluded target had room; better an overloaded target than a failed request.
	return first
}

// hashBytes is FNV-1a (64-bit) followed by a Murmur3 finalizer. It is fixed, unlike
// hash/maphash's per-process seed, so every gateway instance maps a key to the same target; the
// finalizer fixes FNV's weak mixing of the last bytes, which matters for short keys like IPs.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix64(h)
}
