package acl

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	_ "github.com/weir-gateway/weir/filters/apikey" // README examples authenticate with it
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func testConsumers(tb testing.TB) *filter.Consumers {
	tb.Helper()
	key := func(s string) [][sha256.Size]byte { return [][sha256.Size]byte{sha256.Sum256([]byte(s))} }
	cs, err := filter.NewConsumers([]*filter.Consumer{
		{Name: "alice", Groups: []string{"admins"}, APIKeys: key("alice-key")},
		{Name: "bob", Groups: []string{"staff"}, APIKeys: key("bob-key")},
		{Name: "mallory", Groups: []string{"staff", "banned"}, APIKeys: key("mallory-key")},
		{Name: "nogroup"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

func build(tb testing.TB, yamlCfg string) (filter.Filter, error) {
	tb.Helper()
	tree, err := filtertest.ParseYAML(yamlCfg)
	if err != nil {
		tb.Fatal(err)
	}
	env := filter.Env{Route: "test", Filter: Name, Consumers: testConsumers(tb)}
	return New(env, func(v any) error { return config.DecodeStrict(tree, v) })
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name, Consumers: testConsumers(t)})
}

func TestOnRequest(t *testing.T) {
	cs := testConsumers(t)
	tests := []struct {
		cfg      string
		consumer string // "" none
		want     int    // 0 continues
	}{
		{`{allow: [admins]}`, "alice", 0},
		{`{allow: [admins]}`, "bob", 403},
		{`{allow: [admins]}`, "nogroup", 403},
		{`{allow: [admins]}`, "", 401},
		{`{allow: [admins, staff]}`, "bob", 0},
		{`{allow: [Admins]}`, "alice", 403}, // group names are case-sensitive
		{`{deny: [banned]}`, "bob", 0},
		{`{deny: [banned]}`, "nogroup", 0},
		{`{deny: [banned]}`, "mallory", 403},
		{`{deny: [banned]}`, "", 401},
		{`{allow: [staff], deny: [banned]}`, "mallory", 403},
		{`{allow: [staff], deny: [banned]}`, "bob", 0},
		{`{allow: [staff], deny: [banned]}`, "alice", 403},
	}
	for _, tt := range tests {
		t.Run(tt.cfg+" "+tt.consumer, func(t *testing.T) {
			f, err := build(t, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
			if tt.consumer != "" {
				c.SetConsumer(cs.Named(tt.consumer))
			}
			got := f.OnRequest(c)
			if tt.want == 0 {
				if got != filter.Continue {
					t.Fatalf("refused with %d (%v), want Continue", c.Response.StatusCode(), c.Err())
				}
				return
			}
			if got != filter.Stop || c.Response.StatusCode() != tt.want {
				t.Fatalf("got %v with %d, want Stop with %d", got, c.Response.StatusCode(), tt.want)
			}
			if string(c.Response.Body()) != filter.ErrorBody(tt.want) {
				t.Errorf("body %q", c.Response.Body())
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{}`, "set allow"},
		{`{allow: []}`, "set allow"},
		{`{allow: ["a b"]}`, `allow[0]: "a b" is not a group name`},
		{`{deny: [x, x]}`, `deny[1]: group "x" is listed twice`},
		{`{allow: [x], deny: [x]}`, "could never pass"},
		{`{groups: [x]}`, `unknown key "groups"`},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("build(%s): got %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	f, err := build(t, `{allow: [ops, staff], deny: [banned]}`)
	if err != nil {
		t.Fatal(err)
	}
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	c.SetConsumer(testConsumers(t).Named("bob"))
	if a := testing.AllocsPerRun(200, func() { f.OnRequest(c) }); a != 0 {
		t.Fatalf("OnRequest allocates %v times, want 0", a)
	}
}

func BenchmarkACL(b *testing.B) {
	f, err := build(b, `{allow: [ops, staff], deny: [banned]}`)
	if err != nil {
		b.Fatal(err)
	}
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\n")
	c.SetConsumer(testConsumers(b).Named("bob"))
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}
