package proxy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/valyala/fasthttp"
)

// HealthOptions configures active health checks. An empty Path disables them.
type HealthOptions struct {
	// Path is requested with GET on every target, every Interval.
	Path string
	// Host is the Host header of the check; empty uses the target address.
	Host string
	// Expect lists the statuses that count as healthy; empty means any 2xx or 3xx.
	Expect []int
	// Interval between two checks of one target; Jitter adds up to this much at random to each
	// wait, so that many gateways (or many targets) do not probe in lockstep.
	Interval time.Duration
	Jitter   time.Duration
	// Timeout bounds one check, connection included.
	Timeout time.Duration
	// HealthyThreshold checks in a row must pass for an unhealthy target to serve again, and
	// UnhealthyThreshold must fail for a healthy one to be taken out.
	HealthyThreshold   int
	UnhealthyThreshold int
	// GRPC checks with grpc.health.v1.Health/Check over HTTP/2 (h2c, or TLS when the upstream
	// has tls) instead of GET Path: healthy is SERVING. Service is the service asked about;
	// empty asks about the server as a whole.
	GRPC    bool
	Service string
}

// Defaults of the active health check, applied by Options when Path is set.
const (
	DefaultHealthInterval     = 5 * time.Second
	DefaultHealthTimeout      = time.Second
	DefaultHealthyThreshold   = 1
	DefaultUnhealthyThreshold = 2
)

func (h *HealthOptions) enabled() bool { return h.Path != "" || h.GRPC }

// key lets setHealth skip restarting checkers when nothing changed (Expect, a slice, makes
// the struct incomparable).
func (h HealthOptions) key() string { return fmt.Sprint(h) }

// OutlierOptions configures passive health checking (outlier detection) from real traffic. Zero
// thresholds disable that kind of ejection.
type OutlierOptions struct {
	// Consecutive5xx responses of 500 and above (and timeouts) eject a target.
	Consecutive5xx int
	// ConsecutiveConnectFailures refused, reset or timed-out connects eject a target.
	ConsecutiveConnectFailures int
	// BaseEjection is the first ejection's length; the n-th in a row lasts n × BaseEjection,
	// capped at MaxEjection.
	BaseEjection time.Duration
	MaxEjection  time.Duration
	// MaxEjectedPercent caps the share of the pool that may be ejected at once, so a blip that
	// touches every target cannot empty the pool. At least one target of a pool of two or more
	// may always be ejected.
	MaxEjectedPercent int
}

// Outlier defaults: Envoy's, except a lower connect-failure threshold, since a refused connect
// is a much clearer signal than a 5xx and costs nothing to retry.
const (
	DefaultConsecutive5xx             = 5
	DefaultConsecutiveConnectFailures = 3
	DefaultBaseEjection               = 30 * time.Second
	DefaultMaxEjection                = 5 * time.Minute
	DefaultMaxEjectedPercent          = 50
)

func (m *member) startChecker() {
	m.stop = make(chan struct{})
	m.checkerDone = make(chan struct{})
	go m.checkLoop(m.stop, m.checkerDone)
}

// stopChecker stops the active checker and waits for it, so a closed pool leaves no goroutine.
func (m *member) stopChecker() {
	if m.stop == nil {
		return
	}
	close(m.stop)
	<-m.checkerDone
	m.stop, m.checkerDone = nil, nil
}

func (m *member) checkLoop(stop, done chan struct{}) {
	defer close(done)
	// A separate single-connection client keeps checks off the request pool, so a pool
	// exhausted by traffic does not fail its own health checks, and vice versa.
	hc := &fasthttp.HostClient{
		Addr:     m.addr,
		Name:     m.pool.name,
		Dial:     m.hc.Dial,
		MaxConns: 1,
		// fasthttp's idle-connection cleaner outlives a closed client by up to this long.
		MaxIdleConnDuration:      m.pool.tr.idleTimeout,
		NoDefaultUserAgentHeader: true,
		MaxResponseBodySize:      64 << 10,
		ReadBufferSize:           maxResponseHeader,
	}
	defer hc.CloseIdleConnections()
	// A change between HTTP and gRPC checks changes the settings' key, which restarts the
	// checker, so the kind is fixed for the loop's life.
	var gc *grpcChecker
	if h := m.pool.health.Load(); h.GRPC {
		gc = m.newGRPCChecker()
		defer gc.close()
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	// The first check comes after a random fraction of the interval, so the checks of a pool
	// spread out from the start.
	h := m.pool.health.Load()
	t := time.NewTimer(time.Duration(rand.Int64N(int64(h.Interval)/2 + 1)))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		h = m.pool.health.Load()
		if gc != nil {
			m.applyCheck(gc.check(h), h)
		} else {
			m.check(hc, h, req, resp)
		}
		wait := h.Interval
		if h.Jitter > 0 {
			wait += time.Duration(rand.Int64N(int64(h.Jitter) + 1))
		}
		t.Reset(wait)
	}
}

// check runs one probe and applies its result.
func (m *member) check(hc *fasthttp.HostClient, h *HealthOptions, req *fasthttp.Request, resp *fasthttp.Response) {
	req.Reset()
	resp.Reset()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(h.Path)
	host := h.Host
	if host == "" {
		host = m.addr
		if m.host != "" {
			host = m.host
		}
	}
	req.Header.SetHost(host)
	req.Header.Set("User-Agent", "weir-health-check")
	start := time.Now()
	err := hc.DoTimeout(req, resp, h.Timeout)
	res := CheckResult{Time: start, Duration: time.Since(start)}
	if err != nil {
		res.Error = err.Error()
	} else {
		res.Status = resp.StatusCode()
		if len(h.Expect) > 0 {
			res.OK = slices.Contains(h.Expect, res.Status)
		} else {
			res.OK = res.Status >= 200 && res.Status < 400
		}
		if !res.OK {
			res.Error = fmt.Sprintf("unexpected status %d", res.Status)
		}
	}
	m.applyCheck(res, h)
}

func (m *member) applyCheck(res CheckResult, h *HealthOptions) {
	m.mu.Lock()
	m.last = res
	ejected := !m.ejectedUntil.IsZero()
	until := m.ejectedUntil
	if res.OK {
		m.failRun = 0
		m.okRun++
		if m.unhealthy && m.okRun >= h.HealthyThreshold {
			m.unhealthy = false
		}
	} else {
		m.okRun = 0
		m.failRun++
		if !m.unhealthy && m.failRun >= h.UnhealthyThreshold {
			m.unhealthy = true
		}
	}
	m.updateLocked()
	m.mu.Unlock()
	// A passing active check overrides an outlier ejection, as Envoy does by default: the
	// checker has just seen the target answer, and waiting out the cooldown would leave a
	// recovered backend idle for no reason.
	if res.OK && ejected {
		m.uneject(until, true)
	}
}
