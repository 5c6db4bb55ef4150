package engine

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/proxy"
	"github.com/weir-gateway/weir/core/router"
	"github.com/weir-gateway/weir/core/telemetry"
)

// snapshot is everything a request needs, built from one config and never modified after
// build. Requests hold a reference while they run; the snapshot's resources are released when
// it has been replaced and its last request has finished.
type snapshot struct {
	cfg     *config.Config
	table   *router.Table
	routes  []route
	trusted *edge.Trusted
	// upstreams are the http upstreams by name, for routes' overrides and the admin API.
	upstreams map[string]*proxy.Upstream
	// consumers are the callers auth filters identify (see consumers.go); the edge strips the
	// headers that name them from client requests (edge.Trusted.SetAlwaysStrip).
	consumers *filter.Consumers

	// refs counts the requests running on this snapshot plus one while it is current.
	refs atomic.Int64
	// releases undoes every acquisition made at build: shared upstreams, filters.
	releases []func() error
	closed   chan struct{}
}

type route struct {
	name     string
	pipeline *filter.Pipeline
	terminal func(*filter.Ctx)
	metrics  *telemetry.RouteMetrics // resolved here so recording a request looks nothing up
	ws       *wsRoute                // WebSocket handshakes (websocket.go)
	// grpc: the route's upstream is kind grpc, whose calls on HTTP/2 stream both ways, so
	// their request bodies are neither buffered nor bound by the body clock (streamBody).
	grpc bool
}

// acquire takes a reference unless the snapshot already retired (refs reached zero), in which
// case the caller must load the current snapshot again.
func (s *snapshot) acquire() bool {
	for {
		r := s.refs.Load()
		if r <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (s *snapshot) release(log zerolog.Logger) {
	if s.refs.Add(-1) == 0 {
		if err := s.close(); err != nil {
			log.Error().Err(err).Str("config", s.cfg.Hash).Msg("close retired snapshot")
		}
	}
}

// close releases build-time acquisitions in reverse order.
func (s *snapshot) close() error {
	var errs []error
	for i := len(s.releases) - 1; i >= 0; i-- {
		if err := s.releases[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.releases = nil
	close(s.closed)
	return errors.Join(errs...)
}

// build compiles cfg into a snapshot. Every problem is collected and returned together; on any
// error what was already acquired is released, so a failed build leaves nothing behind.
func build(cfg *config.Config, shared *filter.Shared, log zerolog.Logger) (s *snapshot, err error) {
	s = &snapshot{cfg: cfg, closed: make(chan struct{})}
	s.refs.Store(1)
	defer func() {
		if err != nil {
			if cerr := s.close(); cerr != nil {
				log.Error().Err(cerr).Msg("release partially built snapshot")
			}
			s = nil
		}
	}()
	var errs []error
	s.trusted, err = edge.ParseTrusted(cfg.Server.TrustedProxies)
	if err != nil {
		errs = append(errs, &config.Error{File: cfg.File, Path: "server.trusted_proxies", Err: err})
	} else if sh := cfg.Server.StripClientHeaders; sh != nil { // nil: a config not from Load
		if err := s.trusted.SetStripHeaders(sh); err != nil {
			errs = append(errs, &config.Error{File: cfg.File, Path: "server.strip_client_headers", Err: err})
		}
	}

	if s.consumers, err = buildConsumers(cfg); err != nil {
		errs = append(errs, &config.Error{File: cfg.File, Path: "consumers", Err: err})
	}
	if s.trusted != nil {
		// The headers through which the gateway names the caller reach the upstream only from
		// an auth filter's verdict: the edge removes a client's own, whoever the peer.
		if err := s.trusted.SetAlwaysStrip(cfg.ConsumerHeaderNames()); err != nil {
			errs = append(errs, &config.Error{File: cfg.File, Path: "consumers", Err: err})
		}
	}

	terminals := make(map[string]func(*filter.Ctx), len(cfg.Upstreams))
	for name, u := range cfg.Upstreams {
		t, err := s.upstream(cfg, name, u, shared, log)
		if err != nil {
			errs = append(errs, &config.Error{File: cfg.File, Path: "upstreams." + name, Err: err})
			continue
		}
		terminals[name] = t
	}

	rr := make([]router.Route, len(cfg.Routes))
	s.routes = make([]route, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		rr[i] = routerRoute(rc)
		p, err := s.pipeline(cfg, i, shared, log)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var (
			term func(*filter.Ctx)
			dial func(*filter.Ctx) net.Conn
		)
		if rc.Split != nil {
			var sp *splitter
			if sp, err = s.splitTerminal(cfg, i, terminals); err == nil {
				term = sp.forward
				dial, err = s.splitWebSocket(cfg, i, sp)
			}
		} else if term, err = s.routeTerminal(cfg, i, rc.Upstream, terminals[rc.Upstream]); err == nil {
			dial, err = s.websocketDial(cfg, i, rc.Upstream)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ws, err := s.newWSRoute(&cfg.Routes[i], shared, dial)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.routes[i] = route{name: rc.Name, pipeline: p, terminal: withConsumer(term), metrics: telemetry.Route(rc.Name), ws: ws,
			grpc: rc.Split == nil && cfg.Upstreams[rc.Upstream].Kind == config.KindGRPC}
	}
	if s.table, err = router.Compile(rr); err != nil {
		errs = append(errs, &config.Error{File: cfg.File, Path: "routes", Err: err})
	}
	// Filters, plugins and the router may quote config values; cfg knows which are secret.
	return s, cfg.RedactError(errors.Join(errs...))
}

func routerRoute(rc config.Route) router.Route {
	r := router.Route{
		Name:       rc.Name,
		Host:       rc.Match.Host,
		Path:       rc.Match.Path,
		PathPrefix: rc.Match.PathPrefix,
		PathRegex:  rc.Match.PathRegex,
		Methods:    rc.Match.Methods,
		Raw:        rc.NormalizePath != nil && !*rc.NormalizePath,
		AllowTrace: rc.AllowTrace,
	}
	for _, k := range slices.Sorted(maps.Keys(rc.Match.Headers)) { // stable error messages
		r.Headers = append(r.Headers, router.Header{Name: k, Value: rc.Match.Headers[k]})
	}
	return r
}

// pipeline builds route i's filters, each decoding its own config subtree strictly.
func (s *snapshot) pipeline(cfg *config.Config, i int, shared *filter.Shared, log zerolog.Logger) (*filter.Pipeline, error) {
	rc := cfg.Routes[i]
	if len(rc.Filters) > filter.MaxSlots {
		return nil, &config.Error{File: cfg.File, Path: fmt.Sprintf("routes[%d].filters", i), Route: rc.Name,
			Err: fmt.Errorf("%d filters; a route may have at most %d", len(rc.Filters), filter.MaxSlots)}
	}
	var (
		fs    []filter.Filter
		names []string
		errs  []error
	)
	for j, fc := range rc.Filters {
		where := &config.Error{File: cfg.File, Path: fmt.Sprintf("routes[%d].filters[%d]", i, j), Route: rc.Name, Filter: fc.Name}
		factory, ok := pluginFactory(cfg, fc.Name)
		if !ok {
			factory, ok = filter.Lookup(fc.Name)
		}
		if !ok {
			where.Line = cfg.Line(where.Path)
			where.Err = fmt.Errorf("unknown filter %q (built-in: %s)", fc.Name, strings.Join(filter.Names(), ", "))
			errs = append(errs, where)
			continue
		}
		env := filter.Env{
			Route:     rc.Name,
			Filter:    fc.Name,
			Slot:      j,
			Log:       log.With().Str("route", rc.Name).Str("filter", fc.Name).Logger(),
			Shared:    shared,
			Consumers: s.consumers,
			Dir:       configDir(cfg),
			Upstreams: s,
			Upstream:  rc.Upstream,
		}
		var sub any = fc.Config
		if fc.Config == nil {
			sub = map[string]any{}
		}
		f, err := factory(env, func(v any) error { return config.DecodeStrict(sub, v) })
		if err != nil {
			errs = append(errs, located(cfg, where, err))
			continue
		}
		fs = append(fs, traced(cfg, f, j, fc.Name))
		names = append(names, fc.Name)
	}
	p := filter.NewPipeline(fs, names)
	s.releases = append(s.releases, p.Close)
	return p, errors.Join(errs...)
}

// LoadConfig loads and validates the config at path. When it has problems, every filter is
// checked too, so the error lists every problem at once; a valid config's filters are checked
// by the snapshot build that follows (New, Apply, Check), so none is built twice.
func LoadConfig(path string) (*config.Config, error) {
	return config.Load(path, checkFilters)
}

// checkFilters builds every filter of every route off to the side and releases them, so that
// a config with other mistakes still gets its filter configs checked.
func checkFilters(cfg *config.Config) error {
	var errs []error
	for i := range cfg.Routes {
		s := &snapshot{closed: make(chan struct{})}
		// Filters that name a consumer (an anonymous one) need the index; a broken consumers
		// section is reported by Validate.
		s.consumers, _ = buildConsumers(cfg)
		if _, err := s.pipeline(cfg, i, filter.NewShared(), zerolog.Nop()); err != nil {
			errs = append(errs, err)
		}
		if err := s.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Check builds cfg exactly as a reload would, without serving it, and releases everything
// again. It is what `weir validate` runs, so validation and loading can never disagree.
func Check(cfg *config.Config) error {
	s, err := build(cfg, filter.NewShared(), zerolog.Nop())
	if err != nil {
		return err
	}
	return s.close()
}

// located places each problem in err at where: a strict-decoding error already names the key
// inside the filter's config, which is appended to where's path.
func located(cfg *config.Config, where *config.Error, err error) error {
	var errs []error
	for _, e := range config.Errors(err) {
		l := *where
		if e.Path != "" {
			l.Path += "." + e.Path
		}
		l.Line = cfg.Line(l.Path)
		l.Err = e.Err
		errs = append(errs, &l)
	}
	return errors.Join(errs...)
}

// configDir is the directory relative paths in cfg resolve against ("" for a config built in
// code, which resolves against the working directory).
func configDir(cfg *config.Config) string {
	if cfg.File == "" {
		return ""
	}
	return filepath.Dir(cfg.File)
}
