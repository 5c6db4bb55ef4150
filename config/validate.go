package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// Validate checks c's values and cross-references and reports every problem, not only the first,
// as errors.Join of *Error values. knownFilter reports whether a filter name exists (built-in or
// plugin); nil skips that check, which is how Load calls it since the registry lives in core.
// Validate does not modify c.
func Validate(c *Config, knownFilter func(name string) bool) error {
	if c == nil {
		return &Error{Err: errors.New("no config")}
	}
	p := &problems{file: c.File, lines: c.lines}
	if c.File != "" {
		p.envOf = envSet
	}
	validateServer(p, &c.Server, c.listenList)
	validateAccessLog(p, &c.AccessLog)
	validateLog(p, &c.Log)
	validateTracing(p, &c.Tracing)
	for _, name := range sortedKeys(c.Upstreams) {
		validateUpstream(p, name, c.Upstreams[name])
	}
	validateRoutes(p, c, knownFilter)
	validatePlugins(p, c)
	validateConsumers(p, c)
	return p.err()
}

func validateServer(p *problems, s *Server, listenList bool) {
	validateListeners(p, s, listenList)
	if s.Admin != "" {
		if err := checkListen(s.Admin); err != nil {
			p.add("server.admin", "", "", err)
		} else if l := overlapping(s.Listen, s.Admin); l != "" {
			p.add("server.admin", "", "", fmt.Errorf("%q overlaps server.listen %q; the admin API needs its own listener", s.Admin, l))
		} else if host, _, _ := net.SplitHostPort(s.Admin); !LoopbackHost(host) && s.AdminToken == "" && !s.AdminInsecure {
			// The admin API reloads the gateway and shows its config; off loopback, a token is
			// what stands between it and anyone who can reach the address.
			p.add("server.admin", "", "", fmt.Errorf("%q is not a loopback address and server.admin_token is empty, so anyone who can reach it could reload the gateway and read its config; set server.admin_token (better: $%s), or server.admin_insecure: true to allow it without one",
				s.Admin, EnvVar("server.admin_token")))
		}
	}
	for i, h := range s.AdminHosts {
		if err := checkAdminHost(h); err != nil {
			p.add(fmt.Sprintf("server.admin_hosts[%d]", i), "", "", err)
		}
	}
	nonNegDur(p, "server.drain_timeout", s.DrainTimeout)
	nonNegDur(p, "server.read_timeout", s.ReadTimeout)
	nonNegDur(p, "server.write_timeout", s.WriteTimeout)
	nonNegDur(p, "server.idle_timeout", s.IdleTimeout)
	nonNegDur(p, "server.idle_park_after", s.IdleParkAfter)
	nonNeg(p, "server.max_header_bytes", int64(s.MaxHeaderBytes))
	nonNeg(p, "server.max_body_bytes", int64(s.MaxBodyBytes))
	nonNegDur(p, "server.body_timeout", s.BodyTimeout)
	nonNeg(p, "server.body_buffer_bytes", int64(s.BodyBufferBytes))
	nonNeg(p, "server.max_conns", int64(s.MaxConns))
	nonNeg(p, "server.max_conns_per_ip", int64(s.MaxConnsPerIP))
	nonNeg(p, "server.max_tunnels", int64(s.MaxTunnels))
	if h := s.HTTP2; h.Enabled || h.H2C {
		// 0 would be no limit for the flood limits, and a server that takes no streams.
		for _, l := range []struct {
			key string
			n   int
		}{
			{"max_concurrent_streams", h.MaxConcurrentStreams}, {"max_resets_per_second", h.MaxResetsPerSecond},
			{"max_pings_per_second", h.MaxPingsPerSecond}, {"max_settings_per_second", h.MaxSettingsPerSecond},
			{"max_continuation_frames", h.MaxContinuationFrames},
		} {
			if l.n <= 0 {
				p.add("server.http2."+l.key, "", "", fmt.Errorf("must be positive (%d)", l.n))
			}
		}
	}
	for i, tp := range s.TrustedProxies {
		if _, err := parseProxy(tp); err != nil {
			p.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "", "", err)
		}
	}
}

// validateACME checks the acme settings of a listener's tls, written at at.
func validateACME(p *problems, at string, a *ACME) {
	if !a.AgreeTOS {
		p.add(at+".agree_tos", "", "", errors.New("must be true: obtaining certificates means accepting the CA's terms of service"))
	}
	switch a.CA {
	case "", ACMEProduction, ACMEStaging:
	default:
		if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			p.add(at+".ca", "", "", fmt.Errorf("%q is not %q, %q or an https:// directory URL", a.CA, ACMEProduction, ACMEStaging))
		}
	}
	if a.Email != "" && !strings.Contains(strings.Trim(a.Email, "@"), "@") {
		p.add(at+".email", "", "", fmt.Errorf("%q is not an email address", a.Email))
	}
	for i, h := range a.Hosts {
		if err := checkDNSName(h, false); err != nil {
			p.add(fmt.Sprintf("%s.hosts[%d]", at, i), "", "", err)
		}
	}
	if o := a.OnDemand; o != nil {
		if len(o.Allow) == 0 {
			p.add(at+".on_demand.allow", "", "", errors.New("is empty; list the names that may get a certificate on demand (an open list would let any client make the gateway order certificates)"))
		}
		for i, h := range o.Allow {
			if err := checkDNSName(h, true); err != nil {
				p.add(fmt.Sprintf("%s.on_demand.allow[%d]", at, i), "", "", err)
			}
		}
		nonNegDur(p, at+".on_demand.timeout", o.Timeout)
	}
	if len(a.Hosts) == 0 && a.OnDemand == nil {
		p.add(at, "", "", errors.New("names no certificate: set hosts, on_demand.allow or both"))
	}
	seen := map[string]bool{}
	for i, c := range a.Challenges {
		switch {
		case c != ChallengeHTTP01 && c != ChallengeTLSALPN01:
			p.add(fmt.Sprintf("%s.challenges[%d]", at, i), "", "", fmt.Errorf("%q is not one of %s, %s", c, ChallengeHTTP01, ChallengeTLSALPN01))
		case seen[c]:
			p.add(fmt.Sprintf("%s.challenges[%d]", at, i), "", "", fmt.Errorf("%q is listed twice", c))
		}
		seen[c] = true
	}
}

// checkDNSName accepts a DNS name a public CA can certify: letters, digits and hyphens in
// labels of at most 63 bytes, at least two labels, and, when wild, a leading "*." label.
func checkDNSName(h string, wild bool) error {
	name := strings.TrimSuffix(h, ".")
	if wild {
		name = strings.TrimPrefix(name, "*.")
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("%q is an IP address; list host names", h)
	}
	labels := strings.Split(name, ".")
	if len(name) == 0 || len(name) > 253 || len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified host name", h)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a valid host name (label %q)", h, l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i] | 0x20
			if !('a' <= c && c <= 'z' || '0' <= l[i] && l[i] <= '9' || l[i] == '-') {
				if l[i] == '*' && !wild {
					return fmt.Errorf("%q: wildcards need the dns-01 challenge, which Weir does not offer; list each name", h)
				}
				return fmt.Errorf("%q is not a valid host name (byte %q)", h, l[i])
			}
		}
	}
	return nil
}

func validateAccessLog(p *problems, a *AccessLog) {
	if a.Sample < 1 {
		p.add("access_log.sample", "", "", fmt.Errorf("is %d; it must be at least 1 (1 logs every request)", a.Sample))
	}
	if a.Enabled && strings.TrimSpace(a.Output) == "" {
		p.add("access_log.output", "", "", errors.New(`is empty; use "stdout", "stderr" or a file path`))
	}
	seen := map[string]bool{}
	for i, f := range a.Fields {
		path := fmt.Sprintf("access_log.fields[%d]", i)
		switch {
		case !slices.Contains(AccessLogFields, f):
			p.add(path, "", "", fmt.Errorf("unknown field %q (want some of %s)", f, strings.Join(AccessLogFields, ", ")))
		case seen[f]:
			p.add(path, "", "", fmt.Errorf("field %q is listed twice", f))
		}
		seen[f] = true
	}
}

// validateLog accepts empty settings (a config built in code) as the defaults, info and auto.
func validateLog(p *problems, l *Log) {
	if l.Level != "" && !slices.Contains(LogLevels, l.Level) {
		p.add("log.level", "", "", fmt.Errorf("unknown level %q (want one of %s)", l.Level, strings.Join(LogLevels, ", ")))
	}
	if l.Format != "" && !slices.Contains(LogFormats, l.Format) {
		p.add("log.format", "", "", fmt.Errorf("unknown format %q (want one of %s)", l.Format, strings.Join(LogFormats, ", ")))
	}
}

func validateUpstream(p *problems, name string, u Upstream) {
	path := "upstreams." + name
	if strings.TrimSpace(name) == "" {
		p.add(path, "", "", errors.New("upstream name is empty"))
	}
	kind := u.Kind
	if kind == "" {
		kind = KindHTTP
	}
	if !slices.Contains(Kinds, kind) {
		p.add(path+".kind", "", "", fmt.Errorf("unknown kind %q (want one of %s)", u.Kind, strings.Join(Kinds, ", ")))
	}
	if u.Balance != "" && !slices.Contains(Balancers, u.Balance) {
		p.add(path+".balance", "", "", fmt.Errorf("unknown balance %q (want one of %s)", u.Balance, strings.Join(Balancers, ", ")))
	}
	switch kind {
	case KindHTTP, KindGRPC:
		if len(u.Targets) == 0 {
			p.add(path+".targets", "", "", fmt.Errorf(`is empty; an upstream of kind %s needs at least one "host:port" target`, kind))
		}
	case KindEcho:
		if len(u.Targets) > 0 {
			p.add(path+".targets", "", "", errors.New("an echo upstream answers in-process and takes no targets"))
		}
	}
	seen := map[string]int{}
	for i, t := range u.Targets {
		tpath := fmt.Sprintf("%s.targets[%d]", path, i)
		if err := checkTarget(t); err != nil {
			p.add(tpath, "", "", err)
		} else if first, dup := seen[t]; dup {
			p.add(tpath, "", "", fmt.Errorf("duplicate target %q (also targets[%d])", t, first))
		} else {
			seen[t] = i
		}
	}
	nonNegDur(p, path+".connect_timeout", u.ConnectTimeout)
	nonNegDur(p, path+".timeout", u.Timeout)
	nonNegDur(p, path+".request_timeout", u.RequestTimeout)
	nonNegDur(p, path+".idle_timeout", u.IdleTimeout)
	nonNegDur(p, path+".max_conn_wait", u.MaxConnWait)
	nonNegDur(p, path+".dns_refresh", u.DNSRefresh)
	nonNeg(p, path+".max_conns", int64(u.MaxConns))
	validateBalance(p, path, u)
	validateHealth(p, path+".health", u.Health, kind)
	validateOutlier(p, path+".outlier", u.Outlier)
	validateRetries(p, path+".retries", "", u.Retries)
	if t := u.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		p.add(path+".tls", "", "", errors.New("cert_file and key_file go together (the client certificate and its key)"))
	}
}

// maxWeight matches the balancers' bound on relative weights.
const maxWeight = 1 << 16

func validateBalance(p *problems, path string, u Upstream) {
	for i, w := range u.Weights {
		if w < 1 || w > maxWeight {
			p.add(fmt.Sprintf("%s.targets[%d].weight", path, i), "", "", fmt.Errorf("is %d; weights are 1..%d", w, maxWeight))
		}
	}
	if u.HashOn != "" {
		if u.Balance != BalanceConsistentHash {
			p.add(path+".hash_on", "", "", fmt.Errorf("applies to balance consistent_hash only, not %q", u.Balance))
		}
		name, isHeader := strings.CutPrefix(u.HashOn, "header:")
		cookie, isCookie := strings.CutPrefix(u.HashOn, "cookie:")
		switch {
		case u.HashOn == "client_ip":
		case isHeader && httpsyntax.IsToken(name):
		case isCookie && cookie != "" && !strings.ContainsAny(cookie, "=; "):
		default:
			p.add(path+".hash_on", "", "", fmt.Errorf("%q: want client_ip, header:<name> or cookie:<name>", u.HashOn))
		}
	}
	if u.BoundedLoad != 0 && !(u.BoundedLoad >= 1) {
		p.add(path+".bounded_load", "", "", fmt.Errorf("is %v; it must be at least 1 (1.25 lets a target take 25%% more than its share)", u.BoundedLoad))
	}
}

func validateHealth(p *problems, path string, h Health, upstreamKind string) {
	switch h.Kind {
	case "", HealthHTTP:
		if h.Service != "" {
			p.add(path+".service", "", "", errors.New("applies to health checks of kind grpc"))
		}
		if h.Path == "" {
			return
		}
		if upstreamKind == KindGRPC {
			p.add(path+".path", "", "", errors.New("a grpc upstream is checked with kind: grpc (grpc.health.v1), not an HTTP GET"))
		}
	case HealthGRPC:
		if h.Path != "" || len(h.Expect) > 0 {
			p.add(path, "", "", errors.New("path and expect apply to http checks; a grpc check asks grpc.health.v1.Health/Check about service"))
		}
	default:
		p.add(path+".kind", "", "", fmt.Errorf("unknown kind %q (want http or grpc)", h.Kind))
		return
	}
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		p.add(path+".path", "", "", fmt.Errorf("%q does not start with \"/\"", h.Path))
	}
	for i, st := range h.Expect {
		if st < 100 || st > 599 {
			p.add(fmt.Sprintf("%s.expect[%d]", path, i), "", "", fmt.Errorf("%d is not an HTTP status", st))
		}
	}
	if h.Interval <= 0 {
		p.add(path+".interval", "", "", errors.New("must be positive"))
	}
	if h.Timeout <= 0 {
		p.add(path+".timeout", "", "", errors.New("must be positive"))
	}
	nonNegDur(p, path+".jitter", h.Jitter)
	if h.HealthyThreshold < 1 {
		p.add(path+".healthy_threshold", "", "", errors.New("must be at least 1"))
	}
	if h.UnhealthyThreshold < 1 {
		p.add(path+".unhealthy_threshold", "", "", errors.New("must be at least 1"))
	}
}

func validateOutlier(p *problems, path string, o Outlier) {
	nonNeg(p, path+".consecutive_5xx", int64(o.Consecutive5xx))
	nonNeg(p, path+".consecutive_connect_failures", int64(o.ConsecutiveConnectFailures))
	nonNegDur(p, path+".base_ejection", o.BaseEjection)
	nonNegDur(p, path+".max_ejection", o.MaxEjection)
	if (o.Consecutive5xx > 0 || o.ConsecutiveConnectFailures > 0) && o.BaseEjection <= 0 {
		p.add(path+".base_ejection", "", "", errors.New("must be positive while ejection is enabled"))
	}
	if o.MaxEjectedPercent < 0 || o.MaxEjectedPercent > 100 {
		p.add(path+".max_ejected_percent", "", "", fmt.Errorf("is %d; want 0..100", o.MaxEjectedPercent))
	}
}

func validateRetries(p *problems, path, route string, r Retries) {
	if r.Attempts < 0 || r.Attempts > 10 {
		p.add(path+".attempts", route, "", fmt.Errorf("is %d; want 0..10", r.Attempts))
	}
	if r.Backoff < 0 {
		p.add(path+".backoff", route, "", fmt.Errorf("is negative (%s)", r.Backoff))
	}
	if r.MaxBackoff < r.Backoff {
		p.add(path+".max_backoff", route, "", fmt.Errorf("%s is below backoff %s", r.MaxBackoff, r.Backoff))
	}
	if !(r.Budget >= 0 && r.Budget <= 1) {
		p.add(path+".budget", route, "", fmt.Errorf("is %v; want a fraction of requests from 0 to 1 (0.2 = 20%%)", r.Budget))
	}
	if r.MinRetriesPerSecond < 0 {
		p.add(path+".min_retries_per_second", route, "", fmt.Errorf("is negative (%d)", r.MinRetriesPerSecond))
	}
}

func validateRoutes(p *problems, c *Config, knownFilter func(string) bool) {
	if len(c.Routes) == 0 {
		p.add("routes", "", "", errors.New("no routes; nothing would be served"))
		return
	}
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		path := fmt.Sprintf("routes[%d]", i)
		if strings.TrimSpace(r.Name) == "" {
			p.add(path+".name", "", "", errors.New("route has no name; names appear in logs, metrics and errors"))
		} else if first, dup := names[r.Name]; dup {
			p.add(path+".name", r.Name, "", fmt.Errorf("duplicate route name %q (also routes[%d])", r.Name, first))
		} else {
			names[r.Name] = i
		}
		switch {
		case r.Split != nil:
			if r.Upstream != "" {
				p.add(path, r.Name, "", errors.New("set upstream or split, not both"))
			}
			validateSplit(p, c, path+".split", r.Name, r.Split)
		case r.Upstream == "":
			p.add(path, r.Name, "", errors.New("route has no upstream"))
		case !hasUpstream(c.Upstreams, r.Upstream):
			p.add(path+".upstream", r.Name, "", fmt.Errorf("unknown upstream %q (defined: %s)", r.Upstream, strings.Join(sortedKeys(c.Upstreams), ", ")))
		}
		validateMatch(p, path+".match", r.Name, &r.Match)
		if r.Timeout != nil && *r.Timeout < 0 {
			p.add(path+".timeout", r.Name, "", fmt.Errorf("is negative (%s)", *r.Timeout))
		}
		if r.RequestTimeout != nil && *r.RequestTimeout < 0 {
			p.add(path+".request_timeout", r.Name, "", fmt.Errorf("is negative (%s)", *r.RequestTimeout))
		}
		if r.Retries != nil {
			validateRetries(p, path+".retries", r.Name, *r.Retries)
		}
		if ws := r.WebSocket; ws != nil {
			if ws.IdleTimeout < 0 {
				p.add(path+".websocket.idle_timeout", r.Name, "", fmt.Errorf("is negative (%s)", ws.IdleTimeout))
			}
			if ws.MaxTunnels < 0 {
				p.add(path+".websocket.max_tunnels", r.Name, "", fmt.Errorf("is negative (%d)", ws.MaxTunnels))
			}
		}
		for j, f := range r.Filters {
			fpath := fmt.Sprintf("%s.filters[%d]", path, j)
			switch {
			case strings.TrimSpace(f.Name) == "":
				p.add(fpath, r.Name, "", errors.New("filter name is empty"))
			case knownFilter != nil && !knownFilter(f.Name) && !hasPlugin(c, f.Name):
				p.add(fpath, r.Name, f.Name, errors.New("unknown filter"))
			}
		}
	}
}

// MaxSplitWeight bounds one side's weight of a split, so weights sum without overflow.
const MaxSplitWeight = 1_000_000

func validateSplit(p *problems, c *Config, path, route string, s *Split) {
	if len(s.Upstreams) < 2 {
		p.add(path+".upstreams", route, "", fmt.Errorf("%d upstreams; a split needs at least 2", len(s.Upstreams)))
	}
	total := 0
	seen := map[string]int{}
	for i, u := range s.Upstreams {
		upath := fmt.Sprintf("%s.upstreams[%d]", path, i)
		switch {
		case u.Upstream == "":
			p.add(upath+".upstream", route, "", errors.New("is empty"))
		case !hasUpstream(c.Upstreams, u.Upstream):
			p.add(upath+".upstream", route, "", fmt.Errorf("unknown upstream %q (defined: %s)", u.Upstream, strings.Join(sortedKeys(c.Upstreams), ", ")))
		}
		if first, dup := seen[u.Upstream]; dup {
			p.add(upath+".upstream", route, "", fmt.Errorf("upstream %q listed twice (also upstreams[%d])", u.Upstream, first))
		}
		seen[u.Upstream] = i
		if u.Weight < 0 || u.Weight > MaxSplitWeight {
			p.add(upath+".weight", route, "", fmt.Errorf("is %d; want 0 to %d", u.Weight, MaxSplitWeight))
		} else {
			total += u.Weight
		}
	}
	if len(s.Upstreams) > 0 && total == 0 {
		p.add(path+".upstreams", route, "", errors.New("every weight is 0; at least one side must take requests"))
	}
	if s.Header != "" && !httpsyntax.IsToken(s.Header) {
		p.add(path+".header", route, "", fmt.Errorf("%q is not a valid header name", s.Header))
	}
	if s.Cookie != "" && !httpsyntax.IsToken(s.Cookie) {
		p.add(path+".cookie", route, "", fmt.Errorf("%q is not a valid cookie name", s.Cookie))
	}
	if st := s.Sticky; st != nil {
		if st.Cookie != "" && !httpsyntax.IsToken(st.Cookie) {
			p.add(path+".sticky.cookie", route, "", fmt.Errorf("%q is not a valid cookie name", st.Cookie))
		} else if st.Cookie != "" && st.Cookie == s.Cookie {
			p.add(path+".sticky.cookie", route, "", errors.New("is the same cookie as split.cookie"))
		}
		if st.TTL < 0 {
			p.add(path+".sticky.ttl", route, "", fmt.Errorf("is negative (%s)", st.TTL))
		}
	}
}

func hasUpstream(m map[string]Upstream, name string) bool { _, ok := m[name]; return ok }

func validateMatch(p *problems, path, route string, m *Match) {
	set := 0
	for _, s := range []string{m.Path, m.PathPrefix, m.PathRegex} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		p.add(path, route, "", errors.New("set at most one of path, path_prefix and path_regex"))
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		p.add(path+".path", route, "", fmt.Errorf("%q does not start with \"/\"", m.Path))
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		p.add(path+".path_prefix", route, "", fmt.Errorf("%q does not start with \"/\"", m.PathPrefix))
	}
	if m.PathRegex != "" {
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			p.add(path+".path_regex", route, "", fmt.Errorf("invalid regular expression: %w", err))
		}
	}
	if m.Host != "" {
		if err := checkHost(m.Host); err != nil {
			p.add(path+".host", route, "", err)
		}
	}
	for i, meth := range m.Methods {
		mpath := fmt.Sprintf("%s.methods[%d]", path, i)
		switch {
		case !httpsyntax.IsToken(meth):
			p.add(mpath, route, "", fmt.Errorf("%q is not a valid HTTP method", meth))
		case meth != strings.ToUpper(meth):
			// Methods are case-sensitive on the wire; "get" would never match a GET request.
			p.add(mpath, route, "", fmt.Errorf("%q must be upper case", meth))
		}
	}
	for _, h := range sortedKeys(m.Headers) {
		if !httpsyntax.IsToken(h) {
			p.add(path+".headers."+h, route, "", fmt.Errorf("%q is not a valid header name", h))
		}
	}
}

// checkListen accepts "host:port" and ":port" (all interfaces); port 0 picks a free port.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has an invalid port %q", s, port)
	}
	if strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("%q has an invalid host %q", s, host)
	}
	return nil
}

// checkTarget accepts "host:port" with a host and a non-zero port, no scheme or path, or an SRV
// name "srv:_service._proto.name".
func checkTarget(s string) error {
	if name, ok := strings.CutPrefix(s, "srv:"); ok {
		if name == "" || strings.ContainsAny(name, " /:?#@") {
			return fmt.Errorf("%q is not srv:_service._proto.name", s)
		}
		return nil
	}
	if strings.Contains(s, "@") {
		// Not quoted: what precedes "@" is likely a user and password.
		return errors.New("has user info (user:password@); a target is host:port only")
	}
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q is not host:port (drop the scheme)", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has an invalid port %q", s, port)
	}
	if strings.ContainsAny(host, "/ ?#@") {
		return fmt.Errorf("%q has an invalid host %q", s, host)
	}
	return nil
}

// sameListener reports whether two valid listen addresses would claim the same socket: the
// same port on the same host, or on any host when one of them is a wildcard.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// overlapping returns the address of the first valid listener that would claim addr's socket.
func overlapping(ls []Listener, addr string) string {
	for _, l := range ls {
		if checkListen(l.Address) == nil && sameListener(l.Address, addr) {
			return l.Address
		}
	}
	return ""
}

// LoopbackHost reports whether host (without port or brackets) names this machine only:
// "localhost" or a loopback address (127.0.0.0/8, ::1, also IPv4-mapped). A wildcard ("",
// "0.0.0.0", "::") is not loopback.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// checkAdminHost accepts a host name or address as it appears in a Host header, without port.
func checkAdminHost(h string) error {
	switch {
	case h == "":
		return errors.New("is empty")
	case strings.Contains(h, "*"):
		return fmt.Errorf("%q: wildcards are not accepted; list each name", h)
	case strings.Contains(h, "://") || strings.ContainsAny(h, "/ @"):
		return fmt.Errorf("%q is not a host name (no scheme, path or user)", h)
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return fmt.Errorf("%q has a port; any port is accepted, list the name only", h)
	}
	return nil
}

// checkHost accepts an exact host name or a leading wildcard label ("*.example.com").
func checkHost(h string) error {
	if strings.Contains(h, "://") || strings.ContainsAny(h, "/ ") {
		return fmt.Errorf("%q is not a host name (no scheme or path)", h)
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return fmt.Errorf("%q has a port; match.host matches the host name only", h)
	}
	if strings.Contains(strings.TrimPrefix(h, "*."), "*") {
		return fmt.Errorf("%q: only a leading \"*.\" wildcard is supported", h)
	}
	return nil
}

// parseProxy accepts a CIDR ("10.0.0.0/8") or a single address, which becomes a /32 or /128.
func parseProxy(s string) (netip.Prefix, error) {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
}

// TrustedPrefixes returns TrustedProxies parsed, skipping invalid entries (Validate reports
// them), so the engine can test a peer address without parsing per request.
func (s Server) TrustedPrefixes() []netip.Prefix { return prefixes(s.TrustedProxies) }

// ProxyProtocolPrefixes returns ProxyProtocolFrom parsed, as TrustedPrefixes does.
func (l *Listener) ProxyProtocolPrefixes() []netip.Prefix { return prefixes(l.ProxyProtocolFrom) }

// prefixes parses addresses and CIDRs, skipping invalid entries (Validate reports them).
func prefixes(list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for _, tp := range list {
		if pfx, err := parseProxy(tp); err == nil {
			out = append(out, pfx)
		}
	}
	return out
}

func nonNegDur(p *problems, path string, d time.Duration) {
	if d < 0 {
		p.add(path, "", "", fmt.Errorf("is negative (%s)", d))
	}
}

func nonNeg(p *problems, path string, n int64) {
	if n < 0 {
		p.add(path, "", "", fmt.Errorf("is negative (%d)", n))
	}
}
