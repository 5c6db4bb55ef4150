// Package breaker is the circuit breaker filter: it stops sending a route's requests upstream
// while the upstream is failing, answers them at once with 503 and Retry-After, and lets a few
// probes through after a cool-down to find out whether the upstream is back.
package breaker

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Name is the name configs use for this filter.
const Name = "breaker"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Name names the breaker: routes whose breakers have the same name and definition share one
	// state (one breaker per upstream). Default: the route's name.
	Name string `mapstructure:"name"`
	// ConsecutiveFailures opens the breaker after that many failures in a row (0: off).
	ConsecutiveFailures int `mapstructure:"consecutive_failures"`
	// ErrorRatio opens it when failures/calls in the window reach it (0: off).
	ErrorRatio float64 `mapstructure:"error_ratio"`
	// SlowRatio opens it when slow calls/calls in the window reach it (0: off).
	SlowRatio float64 `mapstructure:"slow_ratio"`
	// SlowCall is the duration from the request's arrival to the response after which a call
	// is slow.
	SlowCall time.Duration `mapstructure:"slow_call"`
	// Window is the rolling window of the ratios.
	Window time.Duration `mapstructure:"window"`
	// MinRequests is the number of calls the window must hold before a ratio can open it.
	MinRequests int `mapstructure:"min_requests"`
	// OpenFor is how long the breaker stays open before letting probes through.
	OpenFor time.Duration `mapstructure:"open_for"`
	// HalfOpenProbes is how many probes are let through while half-open; all must succeed for
	// the breaker to close.
	HalfOpenProbes int `mapstructure:"half_open_probes"`
	// Failure says which outcomes count as failures.
	Failure *FailureConfig `mapstructure:"failure"`
}

// FailureConfig says what a failure is.
type FailureConfig struct {
	// Statuses are upstream response statuses that count as failures.
	Statuses []int `mapstructure:"statuses"`
	// ConnectionErrors counts the gateway's own 502 and 503 (refused, reset, no target).
	ConnectionErrors *bool `mapstructure:"connection_errors"`
	// Timeouts counts the gateway's own 504 (no response in time).
	Timeouts *bool `mapstructure:"timeouts"`
}

const (
	defaultConsecutive = 5
	defaultWindow      = 10 * time.Second
	defaultMinRequests = 10
	defaultOpenFor     = 30 * time.Second
	defaultProbes      = 1
	defaultSlowCall    = time.Second
	maxProbes          = 1000
)

var defaultStatuses = []int{500, 502, 503, 504}

// MetricsGroup is the telemetry group of the breakers' metrics (the admin API's /stats shows it).
const MetricsGroup = "breakers"

func init() {
	telemetry.Metrics.Export(MetricsGroup, telemetry.Export{Prefix: "weir_breaker", Member: "breaker", Help: map[string]string{
		"state":    "The breaker's state: 0 closed, 1 open, 2 half-open.",
		"opened":   "Times the breaker opened.",
		"rejected": "Requests answered 503 because the breaker was open.",
		"probes":   "Probes let through while half-open.",
	}})
}

// New is the filter's factory. It validates the config and acquires the breaker's state from
// env.Shared under a key naming the breaker and its whole definition, so a reload that keeps the
// definition keeps the state (an open breaker stays open).
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	p, err := settings(cfg)
	if err != nil {
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = env.Route
	}
	if name == "" {
		name = "default"
	}
	log := env.Log
	create := func() (io.Closer, error) {
		return newState(name, p, log, telemetry.Metrics), nil
	}
	f := &Filter{slot: env.Slot}
	var st io.Closer
	if env.Shared != nil {
		st, f.release, err = env.Shared.Acquire("breaker/"+name+"/"+p.String(), create)
		if err != nil {
			return nil, err
		}
	} else {
		st, _ = create()
		f.release = st.Close
	}
	f.st = st.(*state)
	return f, nil
}

// params is the validated definition.
type params struct {
	consecutive int64
	errorRatio  float64
	slowRatio   float64
	slowCall    time.Duration
	window      time.Duration
	minRequests int64
	openFor     time.Duration
	probes      int64
	statuses    [600]bool
	connErrors  bool
	timeouts    bool
}

func (p *params) String() string {
	var sts []int
	for s, on := range p.statuses {
		if on {
			sts = append(sts, s)
		}
	}
	return fmt.Sprintf("consecutive=%d;error=%g;slow=%g/%s;window=%s;min=%d;open=%s;probes=%d;statuses=%v;conn=%t;timeouts=%t",
		p.consecutive, p.errorRatio, p.slowRatio, p.slowCall, p.window, p.minRequests, p.openFor, p.probes,
		sts, p.connErrors, p.timeouts)
}

func settings(cfg Config) (*params, error) {
	p := &params{
		consecutive: int64(cfg.ConsecutiveFailures),
		errorRatio:  cfg.ErrorRatio,
		slowRatio:   cfg.SlowRatio,
		slowCall:    cfg.SlowCall,
		window:      cfg.Window,
		minRequests: int64(cfg.MinRequests),
		openFor:     cfg.OpenFor,
		probes:      int64(cfg.HalfOpenProbes),
		connErrors:  true,
		timeouts:    true,
	}
	switch {
	case cfg.ConsecutiveFailures < 0:
		return nil, fmt.Errorf("consecutive_failures: %d is negative", cfg.ConsecutiveFailures)
	case !ratioOK(cfg.ErrorRatio):
		return nil, fmt.Errorf("error_ratio: %g is not between 0 and 1 (0 turns it off)", cfg.ErrorRatio)
	case !ratioOK(cfg.SlowRatio):
		return nil, fmt.Errorf("slow_ratio: %g is not between 0 and 1 (0 turns it off)", cfg.SlowRatio)
	case cfg.SlowCall < 0:
		return nil, fmt.Errorf("slow_call: %s is negative", cfg.SlowCall)
	case cfg.SlowCall > 0 && cfg.SlowRatio == 0:
		return nil, fmt.Errorf("slow_call: set without slow_ratio")
	case cfg.Window < 0:
		return nil, fmt.Errorf("window: %s is negative", cfg.Window)
	case cfg.MinRequests < 0:
		return nil, fmt.Errorf("min_requests: %d is negative", cfg.MinRequests)
	case cfg.OpenFor < 0:
		return nil, fmt.Errorf("open_for: %s is negative", cfg.OpenFor)
	case cfg.HalfOpenProbes < 0 || cfg.HalfOpenProbes > maxProbes:
		return nil, fmt.Errorf("half_open_probes: %d is outside 1 to %d", cfg.HalfOpenProbes, maxProbes)
	}
	ratios := cfg.ErrorRatio > 0 || cfg.SlowRatio > 0
	if !ratios {
		if cfg.Window != 0 || cfg.MinRequests != 0 {
			return nil, fmt.Errorf("window and min_requests apply to error_ratio and slow_ratio; set one of them")
		}
		if p.consecutive == 0 {
			p.consecutive = defaultConsecutive
		}
	}
	if p.window == 0 {
		p.window = defaultWindow
	}
	if p.window < buckets*time.Millisecond {
		return nil, fmt.Errorf("window: %s is shorter than %dms", p.window, buckets)
	}
	if p.minRequests == 0 {
		p.minRequests = defaultMinRequests
	}
	if p.slowRatio > 0 && p.slowCall == 0 {
		p.slowCall = defaultSlowCall
	}
	if p.openFor == 0 {
		p.openFor = defaultOpenFor
	}
	if p.openFor < time.Millisecond {
		return nil, fmt.Errorf("open_for: %s is shorter than 1ms", p.openFor)
	}
	if p.probes == 0 {
		p.probes = defaultProbes
	}
	statuses := defaultStatuses
	if fc := cfg.Failure; fc != nil {
		if fc.Statuses != nil {
			statuses = fc.Statuses
		}
		if fc.ConnectionErrors != nil {
			p.connErrors = *fc.ConnectionErrors
		}
		if fc.Timeouts != nil {
			p.timeouts = *fc.Timeouts
		}
	}
	for _, s := range statuses {
		if s < 100 || s > 599 {
			return nil, fmt.Errorf("failure: statuses: %d is not an HTTP status (100 to 599)", s)
		}
		p.statuses[s] = true
	}
	return p, nil
}

func ratioOK(r float64) bool { return !math.IsNaN(r) && r >= 0 && r <= 1 }
