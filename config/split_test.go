package config

import (
	"strings"
	"testing"
	"time"
)

const splitBase = `
upstreams:
  a: { targets: ["127.0.0.1:1"] }
  b: { targets: ["127.0.0.1:2"] }
routes:
  - name: r
`

func TestSplitDecodes(t *testing.T) {
	c := mustParse(t, splitBase+`    split:
      upstreams: [ { upstream: a, weight: 95 }, { upstream: b, weight: 5 } ]
      header: X-Canary
      cookie: canary
      sticky: { cookie: side, ttl: 24h }
`)
	s := c.Routes[0].Split
	if s == nil || len(s.Upstreams) != 2 || s.Upstreams[1] != (SplitUpstream{"b", 5}) || s.Header != "X-Canary" ||
		s.Cookie != "canary" || s.Sticky == nil || s.Sticky.Cookie != "side" || s.Sticky.TTL != 24*time.Hour {
		t.Errorf("split = %+v", s)
	}
}

func TestSplitRejected(t *testing.T) {
	tests := []struct{ name, route, want string }{
		{"both upstream and split", `    upstream: a
    split: { upstreams: [ {upstream: a, weight: 1}, {upstream: b, weight: 1} ] }`, "set upstream or split, not both"},
		{"one side", `    split: { upstreams: [ {upstream: a, weight: 1} ] }`, "a split needs at least 2"},
		{"unknown upstream", `    split: { upstreams: [ {upstream: a, weight: 1}, {upstream: c, weight: 1} ] }`, `unknown upstream "c"`},
		{"twice", `    split: { upstreams: [ {upstream: a, weight: 1}, {upstream: a, weight: 1} ] }`, "listed twice"},
		{"negative weight", `    split: { upstreams: [ {upstream: a, weight: -1}, {upstream: b, weight: 1} ] }`, "weight (route \"r\"): is -1"},
		{"huge weight", `    split: { upstreams: [ {upstream: a, weight: 2000000}, {upstream: b, weight: 1} ] }`, "is 2000000; want 0 to 1000000"},
		{"all zero", `    split: { upstreams: [ {upstream: a, weight: 0}, {upstream: b, weight: 0} ] }`, "every weight is 0"},
		{"bad header", `    split: { header: "X Canary", upstreams: [ {upstream: a, weight: 1}, {upstream: b, weight: 1} ] }`, "not a valid header name"},
		{"bad cookie", `    split: { cookie: "a;b", upstreams: [ {upstream: a, weight: 1}, {upstream: b, weight: 1} ] }`, "not a valid cookie name"},
		{"same cookie", `    split: { cookie: c, sticky: {cookie: c}, upstreams: [ {upstream: a, weight: 1}, {upstream: b, weight: 1} ] }`, "same cookie"},
		{"negative ttl", `    split: { sticky: {ttl: -1s}, upstreams: [ {upstream: a, weight: 1}, {upstream: b, weight: 1} ] }`, "sticky.ttl (route \"r\"): is negative"},
		{"unknown key", `    split: { nope: 1, upstreams: [ {upstream: a, weight: 1}, {upstream: b, weight: 1} ] }`, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(splitBase+tt.route+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
