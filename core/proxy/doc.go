// Package proxy is the terminal step of a route: it forwards the request the edge checked
// (package edge) and the filters prepared to an upstream, and hands its response back.
// Upstream responses are held to the same header-section rules as requests
// (httpsyntax.CheckHeaderSection), and their hop-by-hop fields are stripped.
//
// # Upstreams
//
// An upstream is two layers. A Pool outlives config reloads (the engine keeps it in its shared
// store, keyed by the upstream's name and transport settings): one member per backend address
// with its keep-alive connections, its balance.Target (in-flight count, latency estimate,
// availability), its active health checker and its outlier state, plus the retry budget. Each
// config snapshot builds an Upstream view on it (Pool.Upstream) with its own target list,
// weights, balancer and retry policy; members are reference-counted by the views that use
// them, so a reload keeps everything about the addresses that stay and a checker stops when
// the last view using its address closes.
//
// A target is available when its active checks pass (unhealthy_threshold failures take it out,
// healthy_threshold passes bring it back) and it is not ejected by outlier detection
// (consecutive 5xx or connect failures eject it for a cooldown that grows with each ejection in
// a row, never more than max_ejected_percent of the pool at once; a passing active check ends
// an ejection). When no target is available Forward answers 503 at once.
//
// Retries happen only when resending is safe: after a failed connect (nothing was sent), or
// for an idempotent method with no body. A request whose body reached a backend is never sent
// again, and a timed-out attempt is not retried. Retries prefer another target, wait a jittered
// exponential backoff (or a short Retry-After), and are capped by a budget of retries per
// request over the last ten seconds.
//
// Measurements that are not checks run behind environment variables:
//
//	WEIR_P99=1 go test ./core/proxy -run TestP2CvsRoundRobinP99 -v
package proxy
