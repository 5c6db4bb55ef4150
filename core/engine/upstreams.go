package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/proxy"
)

// upstreamOptions maps an upstream's config onto the proxy's options.
func upstreamOptions(cfg *config.Config, name string, u config.Upstream, log zerolog.Logger) proxy.Options {
	o := proxy.Options{
		Name:           name,
		Targets:        u.Targets,
		Weights:        u.Weights,
		Balance:        u.Balance,
		HashOn:         u.HashOn,
		BoundedLoad:    u.BoundedLoad,
		DNSRefresh:     u.DNSRefresh,
		ConnectTimeout: u.ConnectTimeout,
		Timeout:        u.Timeout,
		RequestTimeout: u.RequestTimeout,
		IdleTimeout:    u.IdleTimeout,
		MaxConns:       u.MaxConns,
		MaxConnWait:    u.MaxConnWait,
		Via:            cfg.Server.Via,
		Health: proxy.HealthOptions{
			Path: u.Health.Path, Host: u.Health.Host, Expect: u.Health.Expect,
			Interval: u.Health.Interval, Timeout: u.Health.Timeout, Jitter: u.Health.Jitter,
			HealthyThreshold: u.Health.HealthyThreshold, UnhealthyThreshold: u.Health.UnhealthyThreshold,
			GRPC: u.Health.Kind == config.HealthGRPC, Service: u.Health.Service,
		},
		Outlier: proxy.OutlierOptions{
			Consecutive5xx:             u.Outlier.Consecutive5xx,
			ConsecutiveConnectFailures: u.Outlier.ConsecutiveConnectFailures,
			BaseEjection:               u.Outlier.BaseEjection,
			MaxEjection:                u.Outlier.MaxEjection,
			MaxEjectedPercent:          u.Outlier.MaxEjectedPercent,
		},
		Retry: retryOptions(u.Retries),
	}
	if u.DNSRefresh == 0 {
		// In the config, 0 means "dial names as written"; in the proxy that is negative.
		o.DNSRefresh = -1
	}
	if t := u.TLS; t != nil {
		o.TLS = &proxy.TLSOptions{CAFile: t.CAFile, ServerName: t.ServerName,
			InsecureSkipVerify: t.InsecureSkipVerify, CertFile: t.CertFile, KeyFile: t.KeyFile}
	}
	log = log.With().Str("upstream", name).Logger()
	o.OnDNSError = func(target string, err error) {
		log.Warn().Err(err).Str("target", target).Msg("dns refresh failed; keeping the previous addresses")
	}
	return o
}

func retryOptions(r config.Retries) proxy.RetryOptions {
	return proxy.RetryOptions{
		Attempts: r.Attempts, BackoffBase: r.Backoff, BackoffMax: r.MaxBackoff,
		BudgetRatio: r.Budget, MinRetriesPerSecond: r.MinRetriesPerSecond, RetryOn5xx: r.OnGatewayError,
	}
}

// transportKey fingerprints the settings every connection of a pool shares. Pools are keyed by
// it, so a reload that changes only targets, weights, the algorithm, health checks or retries
// keeps the pool, its warm connections and the health of every target that stays.
func transportKey(o proxy.Options) (string, error) {
	b, err := json.Marshal(struct {
		C, I, W   int64
		M         int
		TLS       *proxy.TLSOptions
		Transport string
	}{int64(o.ConnectTimeout), int64(o.IdleTimeout), int64(o.MaxConnWait), o.MaxConns, o.TLS, "v1"})
	if err != nil {
		return "", fmt.Errorf("fingerprint upstream: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// upstream returns the terminal step for upstream name. Its pool lives in the shared store, so
// it survives reloads and its health checkers stop when the last snapshot using it retires.
func (s *snapshot) upstream(cfg *config.Config, name string, u config.Upstream, shared *filter.Shared, log zerolog.Logger) (func(*filter.Ctx), error) {
	if u.Kind == config.KindEcho {
		return proxy.Echo, nil
	}
	opts := upstreamOptions(cfg, name, u, log)
	if opts.TLS != nil && opts.TLS.InsecureSkipVerify {
		log.Warn().Str("upstream", name).
			Msg("UPSTREAM TLS CERTIFICATES ARE NOT VERIFIED (insecure_skip_verify): anyone on the path can read and change this traffic")
	}
	key, err := transportKey(opts)
	if err != nil {
		return nil, err
	}
	v, release, err := shared.Acquire("upstream/"+name+"/"+key, func() (io.Closer, error) {
		return proxy.NewPool(opts)
	})
	if err != nil {
		return nil, err
	}
	s.releases = append(s.releases, release)
	up, err := v.(*proxy.Pool).Upstream(opts)
	if err != nil {
		return nil, err
	}
	s.releases = append(s.releases, up.Close)
	if s.upstreams == nil {
		s.upstreams = map[string]*proxy.Upstream{}
	}
	s.upstreams[name] = up
	if u.Kind == config.KindGRPC {
		g := proxy.NewGRPC(up)
		s.releases = append(s.releases, g.Close)
		return g.Forward, nil
	}
	return up.Forward, nil
}

// routeTerminal is route i's terminal step to upstream name: the upstream's, or one with the
// route's own timeouts and retries.
func (s *snapshot) routeTerminal(cfg *config.Config, i int, name string, def func(*filter.Ctx)) (func(*filter.Ctx), error) {
	up := s.upstreams[name]
	if up == nil || cfg.Upstreams[name].Kind == config.KindGRPC {
		// A gRPC call's deadline is its grpc-timeout, and a call is never resent.
		// An echo upstream has nothing to time out or retry.
		return def, nil
	}
	ru, err := s.routeUpstream(cfg, i, up)
	if err != nil || ru == nil {
		return def, err
	}
	return ru.Forward, nil
}

// routeUpstream is up with route i's own timeouts and retries, or nil when the route has none.
func (s *snapshot) routeUpstream(cfg *config.Config, i int, up *proxy.Upstream) (*proxy.RouteUpstream, error) {
	rc := cfg.Routes[i]
	if rc.Timeout == nil && rc.RequestTimeout == nil && rc.Retries == nil {
		return nil, nil
	}
	ro := proxy.RouteOptions{Timeout: rc.Timeout, RequestTimeout: rc.RequestTimeout}
	if rc.Retries != nil {
		r := retryOptions(*rc.Retries)
		ro.Retry = &r
	}
	ru, err := up.Route(ro)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Path: fmt.Sprintf("routes[%d]", i), Route: rc.Name, Err: err}
	}
	return ru, nil
}

// UpstreamStatus is one upstream's entry in the admin API.
type UpstreamStatus struct {
	Name    string               `json:"name"`
	Balance string               `json:"balance"`
	Targets []proxy.TargetStatus `json:"targets"`
}

// Upstreams reports every http upstream of the running config with the live state of each
// target.
func (e *Engine) Upstreams() []UpstreamStatus {
	s := e.acquire()
	if s == nil {
		return nil
	}
	defer s.release(e.log)
	out := make([]UpstreamStatus, 0, len(s.upstreams))
	for name, up := range s.upstreams {
		out = append(out, UpstreamStatus{Name: name, Balance: s.cfg.Upstreams[name].Balance, Targets: up.Pool().Status()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// newCertStore loads a listener's certificates from its tls settings (written at path):
// chosen by SNI and reloaded when their files change, and, with tls.acme, obtained from auto
// (the engine's ACME manager) for the names the files do not cover; auto is nil otherwise.
//
// Relative file paths resolve against dir, the config file's directory, as plugin files do.
func newCertStore(c *config.ServerTLS, path, dir string, auto edge.AutoCerts, log zerolog.Logger) (*edge.CertStore, error) {
	pairs := make([]edge.CertPair, len(c.Certificates))
	env := filter.Env{Dir: dir}
	for i, cc := range c.Certificates {
		pairs[i] = edge.CertPair{CertFile: env.Path(cc.CertFile), KeyFile: env.Path(cc.KeyFile)}
	}
	store, err := edge.NewCertStore(pairs, auto, func(err error) {
		log.Error().Err(err).Str("listener", path).Msg("reload tls certificate; keeping the previous one")
	})
	if err != nil {
		return nil, &config.Error{Path: path, Err: err}
	}
	return store, nil
}
