// Package balance chooses which target of an upstream serves each request.
//
// # Using it
//
// core/proxy keeps each upstream's targets in its Pool, which outlives reloads and hands the
// same *Target to every snapshot that names an address (an address that stays keeps its
// *Target, and with it its in-flight count, latency estimate and health); each snapshot builds
// its own balancer over them with New. Per request:
//
//	i := b.Pick(key, -1) // -1: no target available, answer 503 at once
//	t := targets[i]
//	start := t.Begin()
//	… forward …
//	t.End(start, failed)
//
// A retry passes the index that failed as exclude. Health checkers call Target.SetAvailable;
// every algorithm skips unavailable targets. Pick, Begin and End allocate nothing.
//
// # Algorithms
//
// round_robin (also weighted_round_robin): targets take turns in a smooth weighted order
// (a weight-5 target's turns are spread between the others', as with nginx's smooth weighted
// round robin), served from one atomic counter without a lock. Exact shares, no state about
// the backends: the choice for uniform, cheap requests and the default.
//
// random: a draw in proportion to weight (alias method, O(1) for any pool size). No shared
// counter at all, so it scales across cores best; shares are right on average rather than
// exactly.
//
// least_request (also least_conn): the target with the fewest in-flight requests per unit of
// weight, ties broken in round-robin order, so an idle pool is served exactly by weight. Pools of
// up to 8 targets are scanned in full; larger ones compare the round-robin candidate with one
// random other (two choices, as Envoy does), which avoids herding concurrent requests onto the
// single least-loaded target. The choice when request durations vary widely (long polls,
// uploads, slow queries) and backends are alike.
//
// p2c: two distinct targets drawn by weight, the one with the lower cost kept, where cost is
// the target's peak-EWMA latency × (in-flight + 1), as in Finagle and Linkerd. The latency
// estimate jumps to a slow sample at once and otherwise decays with a 10 s time constant, so a
// slowing backend loses traffic before its queue grows and wins it back gradually; a failed
// request counts as at least twice the current estimate, so fast failures do not attract
// traffic. A target with no sample yet is assumed to take Options.DefaultRTT. The choice for
// backends of uneven or changing speed, and the best general-purpose default for latency.
//
// consistent_hash: the key (client IP, a header or a cookie value, chosen by the caller) is
// hashed onto a ring of virtual nodes, Options.HashReplicas per unit of weight, and goes to the
// first target clockwise. The same key reaches the same target while the pool is unchanged, and
// removing one of N targets moves only the keys it held, about 1/N. Bounded load (Mirrokni et
// al.) caps each target at ceil(c × its weighted share of the in-flight requests), c =
// Options.HashBoundedLoad (1.25 by default); a key whose target is full, down or excluded goes
// to the next target along the ring, so one hot key spreads instead of melting its target. The
// hash is fixed (FNV-1a with a Murmur3 finalizer), so all gateway instances agree. The choice for
// cache affinity and sticky sessions. Requests with an empty key are spread around the ring.
//
// # Weights and reloads
//
// Weights are relative integers from 1 to MaxWeight. A balancer reads them once, in New; a
// reload builds a new balancer over the same *Target values, so changing a weight never disturbs
// requests still draining on the old snapshot, and never resets a target's load or health.
package balance
