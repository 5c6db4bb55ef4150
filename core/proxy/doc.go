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
// # gRPC
//
// An upstream of kind grpc is forwarded to by GRPC instead of Forward, over HTTP/2 (h2c, or TLS
// with ALPN h2) through x/net's transport, with the same targets, balancer and health state.
// A gRPC call on an HTTP/2 stream is answered on the stream (edge.StreamOf): messages flow
// both ways as they arrive, and the upstream's grpc-status, grpc-message and
// grpc-status-details-bin trailers (or its trailers-only answer) reach the client unchanged.
// grpc-timeout (up to 8 digits and a unit H M S m u n; anything else is INTERNAL) bounds the
// upstream call; when it expires the client gets DEADLINE_EXCEEDED. Each message written to
// the client must go out within the upstream's timeout, or the stream is reset: a client that
// stops reading does not hold the call. gRPC over HTTP/1.1 is
// refused with 505. gRPC-Web (application/grpc-web, +proto) arrives over either version, goes
// upstream as application/grpc, and its trailers come back as the body's final frame (flag
// 0x80); the base64 grpc-web-text variant is not translated.
//
// Active checks of a gRPC upstream (HealthOptions.GRPC) call grpc.health.v1.Health/Check over
// HTTP/2 on a transport of their own; the two small messages are encoded by hand, so the gateway
// does not link the gRPC libraries. Only SERVING is healthy.
//
// What the gateway itself answers a gRPC client becomes a trailers-only gRPC status
// (GRPCStatusFromHTTP): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 and 405
// UNIMPLEMENTED (no route), 408 and 504 DEADLINE_EXCEEDED, 413, 429 and 431
// RESOURCE_EXHAUSTED, 502 and 503 UNAVAILABLE (upstream unreachable, no healthy target), any
// other UNKNOWN.
//
// Measurements that are not checks run behind environment variables:
//
//	WEIR_P99=1 go test ./core/proxy -run TestP2CvsRoundRobinP99 -v
package proxy
