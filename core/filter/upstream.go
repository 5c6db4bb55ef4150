package filter

import (
	"time"

	"github.com/valyala/fasthttp"
)

// A Caller sends a filter's own requests (HTTP callouts: an authorization check, a lookup) to
// one upstream of the config snapshot, through that upstream's connection pool, balancer,
// health checks and retries, exactly as a route forwards to it.
type Caller interface {
	// Call sends req and writes the upstream's answer into resp, whatever its status, with
	// the body read whole: more than maxBody bytes of body is an error. timeout bounds the
	// whole exchange, retries included. An error means no answer (no available target, a
	// connect failure, a timeout, a malformed response, a body over maxBody). Call blocks:
	// run it on a goroutine of its own, never while holding a lock a request needs.
	Call(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, maxBody int) error
}

// Upstreams finds the config snapshot's upstreams by name. The engine provides it in Env; it
// is valid for the life of the snapshot (a Caller of a retired snapshot answers errors).
type Upstreams interface {
	// Upstream returns a Caller for the upstream named name: only upstreams named in the
	// config can be called. It is false for an unknown name and for an upstream that forwards
	// nowhere (kind echo).
	Upstream(name string) (Caller, bool)
}
