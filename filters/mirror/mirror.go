package mirror

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// sampleSpace is the resolution of fraction: one in a million.
const sampleSpace = 1 << 20

func sample() uint64 { return rand.Uint64N(sampleSpace) }

// Filter copies sampled requests into its shadow's queue.
type Filter struct {
	sh       *shadow
	fraction uint64 // copied when draw() < fraction
	maxBody  int
	draw     func() uint64
	release  func() error
}

// Close releases the shared shadow.
func (f *Filter) Close() error { return f.release() }

// OnRequest copies the request, as it stands at this point of the pipeline, into the queue
// when it is sampled, its body is in memory and within max_body_bytes, and the queue has room.
// It never waits and never touches the client's request or response. A request that is not
// sampled costs one random draw and allocates nothing.
func (f *Filter) OnRequest(c *filter.Ctx) filter.Status {
	if f.fraction == 0 || (f.fraction < sampleSpace && f.draw() >= f.fraction) {
		return filter.Continue
	}
	sh := f.sh
	if c.Request.IsBodyStream() || len(c.Request.Body()) > f.maxBody {
		// A streamed body is read once, by the upstream; copying it would mean buffering it.
		sh.skipped.Add(1)
		return filter.Continue
	}
	if len(sh.queue) == cap(sh.queue) || sh.paused() {
		sh.dropped.Add(1)
		return filter.Continue
	}
	req := fasthttp.AcquireRequest()
	c.Request.CopyTo(req) // a deep copy: nothing of the client's request is kept
	select {
	case sh.queue <- req:
		sh.queued.Add(1)
	default:
		fasthttp.ReleaseRequest(req)
		sh.dropped.Add(1)
	}
	return filter.Continue
}

// OnResponse does nothing: the shadow's answer is never waited for.
func (f *Filter) OnResponse(*filter.Ctx) {}

// shadow is the queue of copies, the workers draining it and the client to the shadow service.
type shadow struct {
	queue  chan *fasthttp.Request
	quit   chan struct{}
	client *fasthttp.HostClient
	p      *params
	log    zerolog.Logger
	once   sync.Once
	warned atomic.Bool
	// failures counts failed copies in a row; while one has failed, copies are dropped until
	// pauseUntil (unix nanoseconds), so a shadow that is down is not dialled for every request.
	failures   atomic.Int64
	pauseUntil atomic.Int64

	// queued, sent and failed count copies; dropped those the full queue refused; skipped
	// those whose body was too large or streamed.
	queued, sent, failed, dropped, skipped *telemetry.Metric
}

func newShadow(p *params, route string, log zerolog.Logger, reg *telemetry.Registry) *shadow {
	sh := &shadow{
		queue: make(chan *fasthttp.Request, p.queue),
		quit:  make(chan struct{}),
		p:     p,
		log:   log,
		client: &fasthttp.HostClient{
			// A comma-separated Addr is used in turn by the client.
			Addr:                          strings.Join(p.targets, ","),
			MaxConns:                      p.workers,
			ReadTimeout:                   p.timeout,
			WriteTimeout:                  p.timeout,
			MaxIdleConnDuration:           p.timeout,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
		},
		queued:  reg.Counter(MetricsGroup, route, "queued"),
		sent:    reg.Counter(MetricsGroup, route, "sent"),
		failed:  reg.Counter(MetricsGroup, route, "failed"),
		dropped: reg.Counter(MetricsGroup, route, "dropped"),
		skipped: reg.Counter(MetricsGroup, route, "skipped"),
	}
	return sh
}

// start runs the workers.
func (sh *shadow) start() *shadow {
	for i := 0; i < sh.p.workers; i++ {
		go sh.work()
	}
	return sh
}

func (sh *shadow) work() {
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.SkipBody = true
	for {
		select {
		case <-sh.quit:
			return
		case req := <-sh.queue:
			sh.send(req, resp)
		}
	}
}

func (sh *shadow) send(req *fasthttp.Request, resp *fasthttp.Response) {
	defer fasthttp.ReleaseRequest(req)
	resp.Reset()
	resp.SkipBody = true
	// The copy keeps the client's Host header; the connection goes to the shadow.
	if err := sh.client.DoTimeout(req, resp, sh.p.timeout); err != nil {
		if sh.warned.CompareAndSwap(false, true) {
			sh.log.Warn().Err(err).Str("shadow", sh.client.Addr).Msg("mirror: first failed copy (later ones are counted)")
		}
		sh.failed.Add(1)
		k := sh.failures.Add(1)
		pause := maxPause
		if k <= 6 {
			pause = min(minPause<<(k-1), maxPause)
		}
		sh.pauseUntil.Store(time.Now().Add(pause).UnixNano())
		return
	}
	sh.failures.Store(0)
	sh.sent.Add(1)
}

// The pause after a failed copy: minPause, doubling with each failure in a row up to maxPause.
const (
	minPause = 100 * time.Millisecond
	maxPause = 5 * time.Second
)

// paused reports whether copies are being dropped after a failure. It reads the clock only
// while the shadow is failing.
func (sh *shadow) paused() bool {
	if sh.failures.Load() == 0 {
		return false
	}
	return time.Now().UnixNano() < sh.pauseUntil.Load()
}

// Close stops the workers; copies still queued are dropped (and counted). It does not wait for
// the copies in flight, which end within timeout: the last request of a retiring snapshot runs
// Close and must not be held up by a slow shadow.
func (sh *shadow) Close() error {
	sh.once.Do(func() {
		close(sh.quit)
		for {
			select {
			case req := <-sh.queue:
				fasthttp.ReleaseRequest(req)
				sh.dropped.Add(1)
			default:
				sh.client.CloseIdleConnections()
				return
			}
		}
	})
	return nil
}
