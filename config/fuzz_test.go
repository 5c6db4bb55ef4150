package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse, which must return a config or an error and never
// panic. Seeds: the test configs, and one small config per kind of mistake.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		minimal,
		"",
		"routes: [",
		"- a",
		"a: &x [*x]",
		"a: &a [1,1]\nb: &b [*a,*a]\nc: [*b,*b]",
		"routes: []\n---\nroutes: []",
		"server: 5",
		"server: { lisen: x }",
		"server: { listen: 8080, admin: \":8080\", drain_timeout: 30, max_body_bytes: 1TB, trusted_proxies: [x] }",
		"access_log: { sample: 0 }",
		"upstreams: { u: { kind: grpc, balance: x, targets: [\"h\", \"h:0\"] } }\nroutes: [{name: r, upstream: u}]",
		"upstreams: { u: {} }\nroutes: [{name: r, upstream: nope}, {name: r}, {upstream: u}]",
		"upstreams: { u: { targets: [a:1] } }\nroutes: [{name: r, upstream: u, match: {path: x, path_prefix: /y, path_regex: '(', methods: [get, 'a b'], host: 'a:1'}}]",
		"upstreams: { u: { targets: [a:1] } }\nroutes: [{name: r, upstream: u, filters: [{}, {a: 1}, {a: {}, b: {}}, [1], x, {1: {2: 3}}]}]",
		"upstreams: { u: { targets: [a:1] } }\nroutes: [{name: r, upstream: u, filters: [{x: {n: .nan}}]}]",
		"routes: [{name: r, match: {headers: {'a b': 1, x: [1]}}}]",
		"? [a, b]\n: c",
		"server: { max_conns: 1e400, max_body_bytes: -1.5 }",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v; want exactly one", c != nil, err)
		}
		if c != nil {
			if err := Validate(c, nil); err != nil {
				t.Fatalf("Parse accepted a config Validate rejects: %v", err)
			}
			_ = c.Redacted()
		}
	})
}
