package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// base returns a valid config built in code.
func base() *Config {
	return &Config{
		Server:    Server{Listen: []Listener{{Address: ":8080"}}, Admin: "127.0.0.1:9901"},
		AccessLog: AccessLog{Enabled: true, Output: "stdout", Sample: 1},
		Upstreams: map[string]Upstream{"u": {Targets: []string{"127.0.0.1:9001"}}, "e": {Kind: KindEcho}},
		Routes:    []Route{{Name: "r", Upstream: "u"}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *Config)
		known func(string) bool
		want  []string // one entry per expected error
	}{
		{"valid", func(c *Config) {}, nil, nil},
		{"no routes", func(c *Config) { c.Routes = nil }, nil, []string{"routes: no routes"}},
		{"route without name", func(c *Config) { c.Routes[0].Name = "" }, nil, []string{"routes[0].name: route has no name"}},
		{"duplicate route", func(c *Config) { c.Routes = append(c.Routes, Route{Name: "r", Upstream: "e"}) }, nil,
			[]string{`routes[1].name (route "r"): duplicate route name "r" (also routes[0])`}},
		{"no upstream", func(c *Config) { c.Routes[0].Upstream = "" }, nil, []string{`routes[0] (route "r"): route has no upstream`}},
		{"unknown upstream", func(c *Config) { c.Routes[0].Upstream = "x" }, nil,
			[]string{`routes[0].upstream (route "r"): unknown upstream "x" (defined: e, u)`}},
		{"http without targets", func(c *Config) { c.Upstreams["u"] = Upstream{Kind: KindHTTP} }, nil,
			[]string{`upstreams.u.targets: is empty`}},
		{"target not host:port", func(c *Config) { c.Upstreams["u"] = Upstream{Targets: []string{"127.0.0.1", ":80", "h:0"}} }, nil,
			[]string{`upstreams.u.targets[0]: "127.0.0.1" is not host:port`, `upstreams.u.targets[1]: ":80" is not host:port`,
				`upstreams.u.targets[2]: "h:0" has an invalid port "0"`}},
		{"ipv6 target", func(c *Config) { c.Upstreams["u"] = Upstream{Targets: []string{"[::1]:80"}} }, nil, nil},
		{"duplicate target", func(c *Config) { c.Upstreams["u"] = Upstream{Targets: []string{"a:1", "b:1", "a:1"}} }, nil,
			[]string{`upstreams.u.targets[2]: duplicate target "a:1" (also targets[0])`}},
		{"unknown kind", func(c *Config) { c.Upstreams["e"] = Upstream{Kind: "soap"} }, nil, []string{`upstreams.e.kind: unknown kind "soap"`}},
		{"grpc health", func(c *Config) {
			c.Upstreams["g"] = Upstream{Kind: KindGRPC, Targets: []string{"a:1"}, Health: Health{Kind: HealthGRPC, Service: "s.S",
				Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}}
		}, nil, nil},
		{"grpc upstream with an http check", func(c *Config) {
			c.Upstreams["g"] = Upstream{Kind: KindGRPC, Targets: []string{"a:1"}, Health: Health{Path: "/h",
				Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}}
		}, nil, []string{"upstreams.g.health.path: a grpc upstream is checked with kind: grpc"}},
		{"grpc check with a path", func(c *Config) {
			c.Upstreams["g"] = Upstream{Kind: KindGRPC, Targets: []string{"a:1"}, Health: Health{Kind: HealthGRPC, Path: "/h",
				Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1}}
		}, nil, []string{"upstreams.g.health: path and expect apply to http checks"}},
		{"service on an http check", func(c *Config) {
			c.Upstreams["g"] = Upstream{Targets: []string{"a:1"}, Health: Health{Service: "s"}}
		}, nil, []string{"upstreams.g.health.service: applies to health checks of kind grpc"}},
		{"unknown health kind", func(c *Config) {
			c.Upstreams["g"] = Upstream{Targets: []string{"a:1"}, Health: Health{Kind: "tcp"}}
		}, nil, []string{`upstreams.g.health.kind: unknown kind "tcp" (want http or grpc)`}},
		{"grpc needs targets", func(c *Config) { c.Upstreams["e"] = Upstream{Kind: "grpc"} }, nil, []string{`upstreams.e.targets: is empty; an upstream of kind grpc needs at least one "host:port" target`}},
		{"unknown balance", func(c *Config) { u := c.Upstreams["u"]; u.Balance = "fast"; c.Upstreams["u"] = u }, nil,
			[]string{`upstreams.u.balance: unknown balance "fast"`}},
		{"every balance", func(c *Config) {
			for _, b := range Balancers {
				c.Upstreams[b] = Upstream{Targets: []string{"a:1"}, Balance: b}
			}
		}, nil, nil},
		{"two paths", func(c *Config) { c.Routes[0].Match = Match{Path: "/a", PathRegex: "^/b"} }, nil,
			[]string{`routes[0].match (route "r"): set at most one of path, path_prefix and path_regex`}},
		{"relative path", func(c *Config) { c.Routes[0].Match.PathPrefix = "v1/" }, nil,
			[]string{`routes[0].match.path_prefix (route "r"): "v1/" does not start with "/"`}},
		{"bad regex", func(c *Config) { c.Routes[0].Match.PathRegex = "[" }, nil, []string{`routes[0].match.path_regex (route "r"): invalid regular expression`}},
		{"lowercase method", func(c *Config) { c.Routes[0].Match.Methods = []string{"get"} }, nil,
			[]string{`routes[0].match.methods[0] (route "r"): "get" must be upper case`}},
		{"bad method", func(c *Config) { c.Routes[0].Match.Methods = []string{"GE T", ""} }, nil,
			[]string{`"GE T" is not a valid HTTP method`, `"" is not a valid HTTP method`}},
		{"custom method", func(c *Config) { c.Routes[0].Match.Methods = []string{"PURGE"} }, nil, nil},
		{"strict sni host", func(c *Config) {
			c.Server.TLS = &ServerTLS{Certificates: []Certificate{{CertFile: "c", KeyFile: "k"}}, StrictSNIHost: "on"}
		}, nil, []string{`server.tls.strict_sni_host: "on" is not one of auto, always, never`}},
		{"acme alone", func(c *Config) {
			c.Server.TLS = &ServerTLS{ACME: &ACME{Hosts: []string{"a.example.com"}, AgreeTOS: true, CA: ACMEStaging,
				OnDemand: &OnDemand{Allow: []string{"*.t.example.com", "b.example.com."}}, Challenges: []string{ChallengeHTTP01}}}
		}, nil, nil},
		{"acme problems", func(c *Config) {
			c.Server.TLS = &ServerTLS{ACME: &ACME{
				CA: "http://ca.internal/dir", Email: "ops",
				Hosts:      []string{"*.a.example.com", "localhost", "10.0.0.1", "a..example.com", "a_b.example.com"},
				OnDemand:   &OnDemand{Allow: []string{"a.*.example.com", "*"}, Timeout: -time.Second},
				Challenges: []string{"dns-01", "http-01", "http-01"},
			}}
		}, nil, []string{
			`server.tls.acme.agree_tos: must be true`,
			`server.tls.acme.ca: "http://ca.internal/dir" is not "production", "staging" or an https:// directory URL`,
			`server.tls.acme.email: "ops" is not an email address`,
			`server.tls.acme.hosts[0]: "*.a.example.com": wildcards need the dns-01 challenge`,
			`server.tls.acme.hosts[1]: "localhost" is not a fully qualified host name`,
			`server.tls.acme.hosts[2]: "10.0.0.1" is an IP address`,
			`server.tls.acme.hosts[3]: "a..example.com" is not a valid host name`,
			`server.tls.acme.hosts[4]: "a_b.example.com" is not a valid host name (byte '_')`,
			`server.tls.acme.on_demand.allow[0]: "a.*.example.com" is not a valid host name`,
			`server.tls.acme.on_demand.allow[1]: "*" is not a fully qualified host name`,
			`server.tls.acme.on_demand.timeout: is negative`,
			`server.tls.acme.challenges[0]: "dns-01" is not one of http-01, tls-alpn-01`,
			`server.tls.acme.challenges[2]: "http-01" is listed twice`,
		}},
		{"acme names nothing", func(c *Config) {
			c.Server.TLS = &ServerTLS{ACME: &ACME{AgreeTOS: true, OnDemand: &OnDemand{}}}
		}, nil, []string{`server.tls.acme.on_demand.allow: is empty`}},
		{"acme without hosts or on demand", func(c *Config) {
			c.Server.TLS = &ServerTLS{ACME: &ACME{AgreeTOS: true}}
		}, nil, []string{`server.tls.acme: names no certificate`}},
		{"tls without certificates", func(c *Config) { c.Server.TLS = &ServerTLS{} }, nil,
			[]string{`server.tls.certificates: is empty; TLS needs at least one certificate, or server.tls.acme`}},
		{"http2 limits", func(c *Config) {
			c.Server.HTTP2 = HTTP2{H2C: true, MaxConcurrentStreams: 0, MaxResetsPerSecond: 1, MaxPingsPerSecond: -1,
				MaxSettingsPerSecond: 1, MaxContinuationFrames: 1}
		}, nil, []string{"server.http2.max_concurrent_streams: must be positive (0)", "server.http2.max_pings_per_second: must be positive (-1)"}},
		{"http2 off needs no limits", func(c *Config) { c.Server.HTTP2 = HTTP2{} }, nil, nil},
		{"host with port", func(c *Config) { c.Routes[0].Match.Host = "a.com:80" }, nil, []string{`has a port`}},
		{"host wildcard", func(c *Config) { c.Routes[0].Match.Host = "*.a.com" }, nil, nil},
		{"host inner wildcard", func(c *Config) { c.Routes[0].Match.Host = "a.*.com" }, nil, []string{`only a leading "*." wildcard`}},
		{"negative durations and sizes", func(c *Config) {
			c.Server.DrainTimeout, c.Server.MaxBodyBytes, c.Server.MaxConnsPerIP = -time.Second, -1, -2
			u := c.Upstreams["u"]
			u.MaxConnWait, u.MaxConns = -time.Millisecond, -1
			c.Upstreams["u"] = u
		}, nil, []string{"server.drain_timeout: is negative (-1s)", "server.max_body_bytes: is negative (-1)",
			"server.max_conns_per_ip: is negative (-2)", "upstreams.u.max_conn_wait: is negative (-1ms)",
			"upstreams.u.max_conns: is negative (-1)"}},
		{"listen not host:port", func(c *Config) { c.Server.Listen[0].Address = "8080" }, nil, []string{`server.listen: "8080" is not host:port`}},
		{"empty listen", func(c *Config) { c.Server.Listen = nil }, nil, []string{`server.listen: is empty`}},
		{"admin not host:port", func(c *Config) { c.Server.Admin = "localhost" }, nil, []string{`server.admin: "localhost" is not host:port`}},
		{"admin disabled", func(c *Config) { c.Server.Admin = "" }, nil, nil},
		{"admin equals listen", func(c *Config) { c.Server.Admin = c.Server.Listen[0].Address }, nil, []string{`server.admin: ":8080" overlaps server.listen`}},
		{"admin on wildcard port", func(c *Config) { c.Server.Admin = "127.0.0.1:8080" }, nil, []string{`overlaps server.listen`}},
		{"admin other host same port", func(c *Config) { c.Server.Listen[0].Address, c.Server.Admin = "10.0.0.1:80", "127.0.0.1:80" }, nil, nil},
		{"trusted proxies", func(c *Config) {
			c.Server.TrustedProxies = []string{"10.0.0.0/8", "::1", "fd00::/8", "1.2.3.4/40", "host"}
		}, nil,
			[]string{`server.trusted_proxies[3]: "1.2.3.4/40" is not an IP address or CIDR`, `server.trusted_proxies[4]: "host" is not an IP address or CIDR`}},
		{"sample zero", func(c *Config) { c.AccessLog.Sample = 0 }, nil, []string{`access_log.sample: is 0`}},
		{"output empty", func(c *Config) { c.AccessLog.Output = "" }, nil, []string{`access_log.output: is empty`}},
		{"unknown filter", func(c *Config) {
			c.Routes[0].Filters = []FilterConfig{{Name: "cors"}, {Name: "headrs"}}
		}, func(n string) bool { return n == "cors" }, []string{`routes[0].filters[1] (route "r", filter "headrs"): unknown filter`}},
		{"filter names unchecked without registry", func(c *Config) { c.Routes[0].Filters = []FilterConfig{{Name: "anything"}} }, nil, nil},
		{"empty filter name", func(c *Config) { c.Routes[0].Filters = []FilterConfig{{Name: ""}} }, nil, []string{`filter name is empty`}},
		{"bad header name", func(c *Config) { c.Routes[0].Match.Headers = map[string]string{"X A": "b"} }, nil, []string{`"X A" is not a valid header name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(c)
			errs := Errors(Validate(c, tt.known))
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), Validate(c, tt.known))
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e.Error(), tt.want[i])
				}
			}
		})
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	c := base()
	c.Routes[0].Match.Methods = []string{"get"}
	_ = Validate(c, nil)
	if c.Routes[0].Match.Methods[0] != "get" {
		t.Error("Validate changed the config")
	}
}

func TestParseUppercasesMethods(t *testing.T) {
	c := mustParse(t, `
upstreams: { u: { targets: ["a:1"] } }
routes: [ { name: r, upstream: u, match: { methods: [get, Post, DELETE] } } ]
`)
	if got, want := c.Routes[0].Match.Methods, []string{"GET", "POST", "DELETE"}; !reflect.DeepEqual(got, want) {
		t.Errorf("methods = %v, want %v", got, want)
	}
}

func TestTrustedPrefixes(t *testing.T) {
	s := Server{TrustedProxies: []string{"10.1.2.3/8", "192.168.0.1", "::1", "bad"}}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.1/32"), netip.MustParsePrefix("::1/128")}
	if got := s.TrustedPrefixes(); !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedPrefixes() = %v, want %v", got, want)
	}
}

func TestParseACME(t *testing.T) {
	c := mustParse(t, `
server:
  listen: ":443"
  tls:
    acme:
      email: ops@example.com
      ca: staging
      storage: /var/lib/weir/acme
      hosts: [api.example.com]
      on_demand: { allow: ["*.tenants.example.com"], timeout: 10s }
      challenges: [tls-alpn-01]
      agree_tos: true
upstreams: { u: { targets: ["a:1"] } }
routes: [ { name: r, upstream: u } ]
`)
	want := &ACME{Email: "ops@example.com", CA: ACMEStaging, Storage: "/var/lib/weir/acme", Hosts: []string{"api.example.com"},
		OnDemand:   &OnDemand{Allow: []string{"*.tenants.example.com"}, Timeout: 10 * time.Second},
		Challenges: []string{ChallengeTLSALPN01}, AgreeTOS: true}
	if got := c.Server.TLS.ACME; !reflect.DeepEqual(got, want) {
		t.Errorf("acme = %+v, want %+v", got, want)
	}
	_, err := Parse("weir.yaml", []byte(`
server: { tls: { acme: { agree_tos: true, hosts: [a.example.com], renew: 1h } } }
upstreams: { u: { targets: ["a:1"] } }
routes: [ { name: r, upstream: u } ]
`))
	if err == nil || !strings.Contains(err.Error(), "renew") {
		t.Errorf("an unknown key under acme: %v", err)
	}
}
