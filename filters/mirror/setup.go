// Package mirror is the traffic mirroring filter: it sends a copy of a sampled fraction of a
// route's requests to a shadow service, in the background, without waiting for it and without
// letting it change the client's answer.
package mirror

import (
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/telemetry"
)

// Name is the name configs use for this filter.
const Name = "mirror"

func init() { filter.Register(Name, New) }

// Config is the filter's config.
type Config struct {
	// Targets are the shadow service's addresses (host:port), used in turn.
	Targets []string `mapstructure:"targets"`
	// Fraction of the route's requests copied, 0 to 1.
	Fraction *float64 `mapstructure:"fraction"`
	// MaxBodyBytes is the largest request body copied; a request with a larger (or streamed,
	// not yet read) body is not mirrored.
	MaxBodyBytes config.Size `mapstructure:"max_body_bytes"`
	// Queue bounds the copies waiting for a worker; a copy that finds it full is dropped.
	Queue int `mapstructure:"queue"`
	// Workers is how many copies are in flight to the shadow at once.
	Workers int `mapstructure:"workers"`
	// Timeout bounds one copy's exchange with the shadow.
	Timeout time.Duration `mapstructure:"timeout"`
}

const (
	defaultMaxBody = 64 << 10
	defaultQueue   = 1024
	defaultWorkers = 4
	defaultTimeout = 5 * time.Second
	maxQueue       = 1 << 20
	maxWorkers     = 1024
	maxBody        = 64 << 20
)

// MetricsGroup is the telemetry group of the mirror's counters; the member is the route.
const MetricsGroup = "mirror"

func init() {
	telemetry.Metrics.Export(MetricsGroup, telemetry.Export{Prefix: "weir_mirror", Member: "route", Help: map[string]string{
		"queued":  "Copies put in the queue.",
		"sent":    "Copies the shadow answered (any status).",
		"failed":  "Copies that could not be sent or got no answer within the timeout.",
		"dropped": "Copies dropped: queue full, shadow failing, or config retired.",
		"skipped": "Sampled requests not copied (body too large or streamed).",
	}})
}

// New is the filter's factory. The queue, its workers and the client to the shadow live in
// env.Shared under a key naming the route and the whole definition, so a reload that keeps the
// definition keeps the copies already queued.
func New(env filter.Env, decode filter.Decoder) (filter.Filter, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	s, err := settings(cfg)
	if err != nil {
		return nil, err
	}
	route := env.Route
	if route == "" {
		route = "default"
	}
	log := env.Log
	create := func() (io.Closer, error) { return newShadow(s, route, log, telemetry.Metrics).start(), nil }
	f := &Filter{fraction: uint64(s.fraction * float64(sampleSpace)), maxBody: s.maxBody, draw: sample}
	var sh io.Closer
	if env.Shared != nil {
		sh, f.release, err = env.Shared.Acquire("mirror/"+route+"/"+s.String(), create)
		if err != nil {
			return nil, err
		}
	} else {
		sh, _ = create()
		f.release = sh.Close
	}
	f.sh = sh.(*shadow)
	return f, nil
}

type params struct {
	targets  []string
	fraction float64
	maxBody  int
	queue    int
	workers  int
	timeout  time.Duration
}

func (p *params) String() string {
	return fmt.Sprintf("targets=%s;fraction=%g;max_body=%d;queue=%d;workers=%d;timeout=%s",
		strings.Join(p.targets, ","), p.fraction, p.maxBody, p.queue, p.workers, p.timeout)
}

func settings(cfg Config) (*params, error) {
	p := &params{fraction: 1, maxBody: int(cfg.MaxBodyBytes), queue: cfg.Queue, workers: cfg.Workers, timeout: cfg.Timeout}
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("targets: at least one shadow address (host:port) is required")
	}
	for i, t := range cfg.Targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil || host == "" || strings.ContainsAny(t, ", /") {
			return nil, fmt.Errorf("targets[%d]: %q is not host:port", i, t)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("targets[%d]: %q: port is not 1 to 65535", i, t)
		}
		p.targets = append(p.targets, t)
	}
	if cfg.Fraction != nil {
		p.fraction = *cfg.Fraction
		if math.IsNaN(p.fraction) || p.fraction < 0 || p.fraction > 1 {
			return nil, fmt.Errorf("fraction: %g is not between 0 and 1", p.fraction)
		}
	}
	switch {
	case cfg.MaxBodyBytes < 0 || cfg.MaxBodyBytes > maxBody:
		return nil, fmt.Errorf("max_body_bytes: %d is outside 0 to %d", cfg.MaxBodyBytes, maxBody)
	case cfg.Queue < 0 || cfg.Queue > maxQueue:
		return nil, fmt.Errorf("queue: %d is outside 1 to %d", cfg.Queue, maxQueue)
	case cfg.Workers < 0 || cfg.Workers > maxWorkers:
		return nil, fmt.Errorf("workers: %d is outside 1 to %d", cfg.Workers, maxWorkers)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("timeout: %s is negative", cfg.Timeout)
	}
	if cfg.MaxBodyBytes == 0 {
		p.maxBody = defaultMaxBody
	}
	if p.queue == 0 {
		p.queue = defaultQueue
	}
	if p.workers == 0 {
		p.workers = defaultWorkers
	}
	if p.timeout == 0 {
		p.timeout = defaultTimeout
	}
	return p, nil
}
