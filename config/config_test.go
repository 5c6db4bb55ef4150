package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// minimal is the smallest valid config; tests append to it.
const minimal = `
upstreams: { u: { targets: ["127.0.0.1:9001"] } }
routes: [ { name: r, upstream: u } ]
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestLoadExample(t *testing.T) {
	c, err := Load("testdata/valid.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.File != "testdata/valid.yaml" || len(c.Hash) != 64 {
		t.Errorf("File, Hash = %q, %q", c.File, c.Hash)
	}
	r := c.Routes[0]
	wantMatch := Match{Host: "api.example.com", PathPrefix: "/v1/", Methods: []string{"GET", "POST"},
		Headers: map[string]string{"X-Env": "prod"}}
	if !reflect.DeepEqual(r.Match, wantMatch) {
		t.Errorf("match = %+v, want %+v", r.Match, wantMatch)
	}
	wantFilters := []FilterConfig{
		{Name: "headers", Config: map[string]any{"request": map[string]any{"set": map[string]any{"X-Hello": "world"}}}},
		{Name: "request-id", Config: map[string]any{}},
	}
	if !reflect.DeepEqual(r.Filters, wantFilters) {
		t.Errorf("filters = %#v, want %#v", r.Filters, wantFilters)
	}
	if got := c.Upstreams["api"].Timeout; got != 5*time.Second {
		t.Errorf("api timeout = %v, want 5s", got)
	}
	if got := c.Upstreams["demo"].Kind; got != KindEcho {
		t.Errorf("demo kind = %q", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	wantServer := Server{
		Listen:       []Listener{{Address: ":8080", Protocols: []string{ProtocolHTTP1}, ProxyProtocol: ProxyProtocolOff}},
		Admin:        "127.0.0.1:9901",
		DrainTimeout: 30 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 60 * time.Second, IdleParkAfter: time.Second, MaxHeaderBytes: 16384, MaxBodyBytes: 100 << 20,
		MaxConns: 10000, MaxConnsPerIP: 0, MaxTunnels: 10000, Metrics: true, TrustedProxies: []string{}, Via: "weir", AdminHosts: []string{},
		BodyTimeout: 60 * time.Second, BodyBufferBytes: 64 << 10,
		StripClientHeaders: []string{"X-Real-IP", "True-Client-IP", "CF-Connecting-IP",
			"X-Client-IP", "X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Prefix"},
		HTTP2: HTTP2{Enabled: true, MaxConcurrentStreams: 100, MaxResetsPerSecond: 100,
			MaxPingsPerSecond: 10, MaxSettingsPerSecond: 10, MaxContinuationFrames: 32},
	}
	if !reflect.DeepEqual(c.Server, wantServer) {
		t.Errorf("server = %+v\nwant     %+v", c.Server, wantServer)
	}
	if want := (AccessLog{Enabled: true, Output: "stdout", Sample: 1, Fields: []string{}}); !reflect.DeepEqual(c.AccessLog, want) {
		t.Errorf("access_log = %+v, want %+v", c.AccessLog, want)
	}
	if want := (Log{Level: "info", Format: "auto"}); c.Log != want {
		t.Errorf("log = %+v, want %+v", c.Log, want)
	}
	wantUp := Upstream{Kind: "http", Targets: []string{"127.0.0.1:9001"}, Balance: "round_robin",
		ConnectTimeout: 2 * time.Second, Timeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
		MaxConns: 512, MaxConnWait: time.Second, DNSRefresh: 30 * time.Second,
		Health: Health{Interval: 5 * time.Second, Timeout: time.Second, Jitter: 500 * time.Millisecond,
			HealthyThreshold: 1, UnhealthyThreshold: 2},
		Outlier: Outlier{Consecutive5xx: 5, ConsecutiveConnectFailures: 3, BaseEjection: 30 * time.Second,
			MaxEjection: 5 * time.Minute, MaxEjectedPercent: 50},
		Retries: Retries{Attempts: 1, Backoff: 25 * time.Millisecond, MaxBackoff: 250 * time.Millisecond,
			Budget: 0.2, MinRetriesPerSecond: 3, OnGatewayError: true}}
	if got := c.Upstreams["u"]; !reflect.DeepEqual(got, wantUp) {
		t.Errorf("upstream = %+v\nwant       %+v", got, wantUp)
	}
}

func TestExplicitZeroKept(t *testing.T) {
	c := mustParse(t, minimal+`
server: { max_conns: 0, read_timeout: 0, max_body_bytes: 0 }
access_log: { enabled: false }
`)
	c2 := mustParse(t, `
upstreams: { u: { targets: ["a:1"], max_conns: 0, timeout: 0s } }
routes: [ { name: r, upstream: u } ]
`)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"server.max_conns", c.Server.MaxConns, 0},
		{"server.read_timeout", c.Server.ReadTimeout, time.Duration(0)},
		{"server.max_body_bytes", c.Server.MaxBodyBytes, Size(0)},
		{"access_log.enabled", c.AccessLog.Enabled, false},
		{"upstream max_conns", c2.Upstreams["u"].MaxConns, 0},
		{"upstream timeout", c2.Upstreams["u"].Timeout, time.Duration(0)},
		{"upstream connect_timeout default", c2.Upstreams["u"].ConnectTimeout, 2 * time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		env, val string
		get      func(*Config) any
		want     any
	}{
		{"WEIR_SERVER_LISTEN", ":9999", func(c *Config) any { return c.Server.Listen[0].Address }, ":9999"},
		{"WEIR_SERVER_ADMIN", "127.0.0.1:7000", func(c *Config) any { return c.Server.Admin }, "127.0.0.1:7000"},
		{"WEIR_SERVER_ADMIN", "", func(c *Config) any { return c.Server.Admin }, ""},
		{"WEIR_SERVER_ADMIN_TOKEN", "s3cret", func(c *Config) any { return c.Server.AdminToken }, "s3cret"},
		{"WEIR_SERVER_DRAIN_TIMEOUT", "5s", func(c *Config) any { return c.Server.DrainTimeout }, 5 * time.Second},
		{"WEIR_SERVER_READ_TIMEOUT", "1s", func(c *Config) any { return c.Server.ReadTimeout }, time.Second},
		{"WEIR_SERVER_WRITE_TIMEOUT", "2s", func(c *Config) any { return c.Server.WriteTimeout }, 2 * time.Second},
		{"WEIR_SERVER_IDLE_TIMEOUT", "3s", func(c *Config) any { return c.Server.IdleTimeout }, 3 * time.Second},
		{"WEIR_SERVER_MAX_HEADER_BYTES", "8192", func(c *Config) any { return c.Server.MaxHeaderBytes }, 8192},
		{"WEIR_SERVER_MAX_BODY_BYTES", "1MiB", func(c *Config) any { return c.Server.MaxBodyBytes }, Size(1 << 20)},
		{"WEIR_SERVER_MAX_CONNS", "7", func(c *Config) any { return c.Server.MaxConns }, 7},
		{"WEIR_SERVER_MAX_CONNS_PER_IP", "3", func(c *Config) any { return c.Server.MaxConnsPerIP }, 3},
		{"WEIR_SERVER_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.1", func(c *Config) any { return c.Server.TrustedProxies },
			[]string{"10.0.0.0/8", "192.168.0.1"}},
		{"WEIR_SERVER_VIA", "edge", func(c *Config) any { return c.Server.Via }, "edge"},
		{"WEIR_ACCESS_LOG_ENABLED", "false", func(c *Config) any { return c.AccessLog.Enabled }, false},
		{"WEIR_ACCESS_LOG_OUTPUT", "stderr", func(c *Config) any { return c.AccessLog.Output }, "stderr"},
		{"WEIR_ACCESS_LOG_SAMPLE", "10", func(c *Config) any { return c.AccessLog.Sample }, 10},
	}
	// The file sets every overridden key, so the test proves the environment wins over the file
	// and not only over the defaults.
	file := minimal + `
server: { listen: ":8080", admin: "127.0.0.1:9901", admin_token: file, drain_timeout: 30s, via: file,
          max_conns: 1, trusted_proxies: [127.0.0.1] }
access_log: { enabled: true, output: stdout, sample: 2 }
`
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(tt.env, tt.val)
			c := mustParse(t, file)
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%q: got %#v, want %#v", tt.env, tt.val, got, tt.want)
			}
		})
	}
}

func TestEnvOverrideErrorNamesVariable(t *testing.T) {
	t.Setenv("WEIR_SERVER_LISTEN", "nonsense")
	t.Setenv("WEIR_SERVER_MAX_CONNS", "many")
	_, err := Parse("test.yaml", []byte(minimal))
	for _, want := range []string{
		`test.yaml: server.listen: "nonsense" is not host:port (from $WEIR_SERVER_LISTEN)`,
		`test.yaml: server.max_conns: invalid integer "many" (from $WEIR_SERVER_MAX_CONNS)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
}

func TestFilterConfigKeepsCase(t *testing.T) {
	c := mustParse(t, `
upstreams: { u: { targets: ["a:1"] } }
routes:
  - name: r
    upstream: u
    match: { headers: { X-Tenant-ID: Acme, x-lower: v } }
    filters:
      - headers: { request: { set: { X-Hello: World, "dotted.Key": 1 } }, List: [ { InnerKey: true } ] }
      - request-id:
      - cors
      - 42: { 7: x }
`)
	f := c.Routes[0].Filters
	want := []FilterConfig{
		{Name: "headers", Config: map[string]any{
			"request": map[string]any{"set": map[string]any{"X-Hello": "World", "dotted.Key": 1}},
			"List":    []any{map[string]any{"InnerKey": true}},
		}},
		{Name: "request-id"},
		{Name: "cors"},
		{Name: "42", Config: map[string]any{"7": "x"}},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("filters = %#v\nwant      %#v", f, want)
	}
	wantH := map[string]string{"X-Tenant-ID": "Acme", "x-lower": "v"}
	if got := c.Routes[0].Match.Headers; !reflect.DeepEqual(got, wantH) {
		t.Errorf("match.headers = %v, want %v", got, wantH)
	}
}

func TestSchemaKeysIgnoreCase(t *testing.T) {
	c := mustParse(t, `
Server: { Listen: ":1234" }
Upstreams: { API: { Targets: ["a:1"] } }
Routes: [ { Name: r, Upstream: API, Match: { Path_Prefix: /x } } ]
`)
	if c.Server.Listen[0].Address != ":1234" || c.Routes[0].Match.PathPrefix != "/x" {
		t.Errorf("listen %q, path_prefix %q", c.Server.Listen[0].Address, c.Routes[0].Match.PathPrefix)
	}
	if _, ok := c.Upstreams["API"]; !ok {
		t.Errorf("upstream names keep their case, got %v", sortedKeys(c.Upstreams))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"syntax", "routes: [", `test.yaml:1: invalid YAML: `},
		{"duplicate key", "routes: []\nroutes: []", `test.yaml:2: invalid YAML: mapping key "routes" already defined at line 1`},
		{"two documents", "routes: []\n---\nroutes: []", `test.yaml:2: invalid YAML: a config file holds one YAML document`},
		{"not a mapping", "- a", `test.yaml: expected a mapping of sections`},
		{"empty", "", `test.yaml: routes: no routes`},
		{"unknown top key", minimal + "plugin: {}", `test.yaml:4: plugin: unknown key "plugin"`},
		{"unknown server key", minimal + "server: { lisen: x }", `test.yaml:4: server: unknown key "lisen"`},
		{"server scalar", minimal + "server: 5", `test.yaml:4: server: expected a mapping, got 5`},
		{"unknown match key", "upstreams: {u: {targets: [a:1]}}\nroutes: [{name: r, upstream: u, match: {hostt: x}}]",
			`test.yaml:2: routes[0].match (route "r"): unknown key "hostt"`},
		{"unknown upstream key", "upstreams: {u: {targets: [a:1], retry: 3}}\nroutes: [{name: r, upstream: u}]",
			`test.yaml:1: upstreams.u: unknown key "retry"`},
		{"duration without unit", minimal + "server: { drain_timeout: 30 }", `server.drain_timeout: duration 30 has no unit`},
		{"bad duration", minimal + "server: { drain_timeout: soon }", `server.drain_timeout: invalid duration "soon"`},
		{"bad size", minimal + "server: { max_body_bytes: 1TB }", `server.max_body_bytes: invalid size "1TB"`},
		{"wrong type", minimal + "server: { max_conns: [1] }", `server.max_conns: expected an integer, got a list`},
		{"routes not list", "routes: {a: 1}", `routes: expected a list of routes, got a mapping`},
		{"route not mapping", "routes: [x]", `routes[0]: expected a route mapping, got "x"`},
		{"filters not list", "upstreams: {u: {targets: [a:1]}}\nroutes: [{name: r, upstream: u, filters: {a: 1}}]",
			`routes[0].filters (route "r"): expected a list of filters, got a mapping`},
		{"filter two keys", "upstreams: {u: {targets: [a:1]}}\nroutes: [{name: r, upstream: u, filters: [{a: {}, b: {}}]}]",
			`routes[0].filters[0] (route "r"): a filter item must have exactly one key, the filter name, found 2 (a, b)`},
		{"filter no keys", "upstreams: {u: {targets: [a:1]}}\nroutes: [{name: r, upstream: u, filters: [{}]}]",
			`routes[0].filters[0] (route "r"): empty filter item`},
		{"filter config scalar", "upstreams: {u: {targets: [a:1]}}\nroutes: [{name: r, upstream: u, filters: [{a: 5}]}]",
			`routes[0].filters[0] (route "r", filter "a"): filter config must be a mapping, got 5`},
		{"filter item list", "upstreams: {u: {targets: [a:1]}}\nroutes: [{name: r, upstream: u, filters: [[a]]}]",
			`routes[0].filters[0] (route "r"): expected a`},
		{"upstream not mapping", "upstreams: {u: 5}\nroutes: [{name: r, upstream: u}]", `upstreams.u: expected a mapping, got 5`},
		{"upstreams list", "upstreams: [a]\nroutes: [{name: r}]", `upstreams: expected a mapping of upstream names, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error containing %q", c, tt.want)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			for _, e := range Errors(err) {
				if e.File != "test.yaml" {
					t.Errorf("error without file: %v", e)
				}
			}
		})
	}
}

// TestMistakesGolden checks the full report for a config with one of every mistake; regenerate
// testdata/mistakes.golden with `go test ./config -update`.
func TestMistakesGolden(t *testing.T) {
	_, err := Load("testdata/mistakes.yaml")
	if err == nil {
		t.Fatal("Load succeeded")
	}
	got := err.Error() + "\n"
	n := len(Errors(err))
	golden := filepath.Join("testdata", "mistakes.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("errors differ from %s (run with -update to accept):\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	// Every line is its own *Error, so `weir validate` can print them one per line.
	if lines := strings.Count(got, "\n"); n != lines {
		t.Errorf("%d *Error values for %d lines", n, lines)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{"0", 0, false},
		{"1048576", 1 << 20, false},
		{"512KiB", 512 << 10, false},
		{"10MiB", 10 << 20, false},
		{"1GiB", 1 << 30, false},
		{"1KB", 1000, false},
		{"1MB", 1000000, false},
		{"2GB", 2000000000, false},
		{"100B", 100, false},
		{" 3 MiB ", 3 << 20, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1", 0, true},
		{"1.5MiB", 0, true},
		{"1TiB", 0, true},
		{"9999999999999GiB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		in   Size
		want string
	}{{0, "0"}, {1, "1"}, {1024, "1KiB"}, {1536, "1536"}, {100 << 20, "100MiB"}, {3 << 30, "3GiB"}}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if back, err := ParseSize(tt.in.String()); err != nil || back != tt.in {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in.String(), back, err, tt.in)
		}
	}
}

func TestSizeFromYAMLNumber(t *testing.T) {
	c := mustParse(t, minimal+"server: { max_body_bytes: 2048 }")
	if c.Server.MaxBodyBytes != 2048 {
		t.Errorf("max_body_bytes = %d, want 2048", c.Server.MaxBodyBytes)
	}
}

func TestDecodeStrict(t *testing.T) {
	type inner struct {
		Window time.Duration `mapstructure:"window"`
		Max    Size          `mapstructure:"max_body"`
	}
	type cfg struct {
		Rate  int               `mapstructure:"rate"`
		Inner inner             `mapstructure:"inner"`
		Set   map[string]string `mapstructure:"set"`
	}
	var got cfg
	in := map[string]any{"rate": 5, "inner": map[string]any{"window": "10s", "max_body": "1MiB"}, "set": map[string]any{"X-A": "b"}}
	if err := DecodeStrict(in, &got); err != nil {
		t.Fatal(err)
	}
	want := cfg{Rate: 5, Inner: inner{Window: 10 * time.Second, Max: 1 << 20}, Set: map[string]string{"X-A": "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	err := DecodeStrict(map[string]any{"rate": "x", "extra": 1, "inner": map[string]any{"window": 10, "nope": 1}}, &got)
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	wantMsgs := []string{
		`rate: invalid integer "x"`,
		`inner.window: duration 10 has no unit (write 10s, 10ms, …)`,
		`inner: unknown key "nope"`,
		`unknown key "extra"`,
	}
	if !reflect.DeepEqual(msgs, wantMsgs) {
		t.Errorf("errors = %q\nwant     %q", msgs, wantMsgs)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "config/weir.yaml", Path: "routes[2].filters[1]", Route: "api", Filter: "headers", Err: errors.New("unknown filter")},
			`config/weir.yaml: routes[2].filters[1] (route "api", filter "headers"): unknown filter`},
		{Error{File: "config/weir.yaml", Line: 7, Path: "upstreams.api.targets[0]", Err: errors.New(`"127.0.0.1" is not host:port`)},
			`config/weir.yaml:7: upstreams.api.targets[0]: "127.0.0.1" is not host:port`},
		{Error{Path: "server.listen", Err: errors.New("bad")}, `server.listen: bad`},
		{Error{Route: "r", Err: errors.New("bad")}, `(route "r"): bad`},
		{Error{File: "f", Err: errors.New("bad")}, `f: bad`},
		{Error{}, `invalid`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	inner := errors.New("inner")
	if e := (&Error{Err: inner}); !errors.Is(e, inner) {
		t.Error("Unwrap does not reach Err")
	}
}

func TestREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		for _, want := range []string{"`" + s.key + "`", "`" + EnvVar(s.key) + "`"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("README.md does not mention %s", want)
			}
		}
	}
}
