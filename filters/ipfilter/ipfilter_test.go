package ipfilter

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

func mustBuild(tb testing.TB, yamlCfg string) filter.Filter {
	return filtertest.MustNewFilter(tb, New, Name, yamlCfg)
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name})
}

// decide runs the filter for a client address and reports whether the request continued.
func decide(t testing.TB, f filter.Filter, client string) (bool, int) {
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	var a netip.Addr
	if client != "" {
		a = netip.MustParseAddr(client)
	}
	c.SetClientIP(a)
	st := f.OnRequest(c)
	return st == filter.Continue, c.Response.StatusCode()
}

func TestDecisions(t *testing.T) {
	tests := []struct {
		name   string
		cfg    string
		client string
		pass   bool
	}{
		{"allow v4 inside", `{allow: [10.0.0.0/8]}`, "10.200.3.4", true},
		{"allow v4 outside", `{allow: [10.0.0.0/8]}`, "11.0.0.1", false},
		{"allow v4 lower edge", `{allow: [10.0.0.0/8]}`, "10.0.0.0", true},
		{"allow v4 upper edge", `{allow: [10.0.0.0/8]}`, "10.255.255.255", true},
		{"allow v4 just below", `{allow: [10.0.0.0/8]}`, "9.255.255.255", false},
		{"allow v4 just above", `{allow: [10.0.0.0/8]}`, "11.0.0.0", false},
		{"allow single address", `{allow: [192.0.2.7]}`, "192.0.2.7", true},
		{"allow single address, neighbour", `{allow: [192.0.2.7]}`, "192.0.2.8", false},
		{"allow v6 inside", `{allow: ["2001:db8::/32"]}`, "2001:db8:ffff::1", true},
		{"allow v6 outside", `{allow: ["2001:db8::/32"]}`, "2001:db9::1", false},
		{"allow v6 single", `{allow: ["2001:db8::1"]}`, "2001:db8::1", true},
		{"v4 client against v6-only allow", `{allow: ["::/0"]}`, "10.0.0.1", false},
		{"v6 client against v4-only allow", `{allow: [0.0.0.0/0]}`, "2001:db8::1", false},
		{"mapped client is matched as v4", `{allow: [10.0.0.0/8]}`, "::ffff:10.1.2.3", true},
		{"mapped entry is matched as v4", `{allow: ["::ffff:10.0.0.0/104"]}`, "10.1.2.3", true},
		{"mapped entry denies v4", `{deny: ["::ffff:192.0.2.1"]}`, "192.0.2.1", false},
		{"zone ignored", `{allow: ["fe80::/10"]}`, "fe80::1%eth0", true},
		{"deny only, listed", `{deny: [203.0.113.0/24]}`, "203.0.113.9", false},
		{"deny only, others pass", `{deny: [203.0.113.0/24]}`, "198.51.100.1", true},
		{"deny only, v6 passes", `{deny: [203.0.113.0/24]}`, "2001:db8::1", true},
		{"deny wins over allow", `{allow: [10.0.0.0/8], deny: [10.1.0.0/16]}`, "10.1.2.3", false},
		{"allow beside a deny", `{allow: [10.0.0.0/8], deny: [10.1.0.0/16]}`, "10.2.0.1", true},
		{"everything v4", `{allow: [0.0.0.0/0]}`, "255.255.255.255", true},
		{"everything v6", `{allow: ["::/0"]}`, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		{"overlapping entries", `{allow: [10.0.0.0/8, 10.1.0.0/16, 10.0.0.0/9]}`, "10.200.0.1", true},
		{"unknown client denied by allow", `{allow: [0.0.0.0/0, "::/0"]}`, "", false},
		{"unknown client denied by deny-only", `{deny: [203.0.113.0/24]}`, "", false},
		{"loopback v6", `{allow: ["::1"]}`, "::1", true},
		{"v6 /64 edge", `{allow: ["2001:db8:0:1::/64"]}`, "2001:db8:0:1:ffff:ffff:ffff:ffff", true},
		{"v6 /64 past edge", `{allow: ["2001:db8:0:1::/64"]}`, "2001:db8:0:2::", false},
		{"v6 /65 edge", `{allow: ["2001:db8::/65"]}`, "2001:db8::7fff:ffff:ffff:ffff", true},
		{"v6 /65 past edge", `{allow: ["2001:db8::/65"]}`, "2001:db8::8000:0:0:0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			pass, status := decide(t, f, tt.client)
			if pass != tt.pass {
				t.Fatalf("client %q: passed %v, want %v", tt.client, pass, tt.pass)
			}
			if !pass && status != 403 {
				t.Errorf("status: got %d, want 403", status)
			}
		})
	}
}

// TestDenyAnswer checks the rejection: 403 with the gateway's JSON error body, nothing upstream.
func TestDenyAnswer(t *testing.T) {
	f := mustBuild(t, `{allow: [10.0.0.0/8]}`)
	p := filter.NewPipeline([]filter.Filter{f}, []string{Name})
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nX-Forwarded-For: 10.0.0.1\n")
	reached := false
	p.Run(c, func(*filter.Ctx) { reached = true })
	if reached {
		t.Fatal("a denied request reached the upstream")
	}
	if got := c.Response.StatusCode(); got != 403 {
		t.Errorf("status %d, want 403", got)
	}
	if got, want := string(c.Response.Body()), filter.ErrorBody(403); got != want {
		t.Errorf("body %q, want %q", got, want)
	}
	if got := string(c.Response.Header.ContentType()); got != "application/json" {
		t.Errorf("content type %q", got)
	}
	if c.Err() == nil {
		t.Error("no reason recorded for the access log")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ cfg, want string }{
		{`{}`, "allow or deny is required"},
		{`{allow: []}`, "allow or deny is required"},
		{`{allow: [""]}`, "allow: [0]: empty entry"},
		{`{allow: [10.0.0.0/33]}`, "not a CIDR prefix"},
		{`{allow: [10.1.2.3/8]}`, "write 10.0.0.0/8"},
		{`{deny: [10.0.0.0/8, banana]}`, "deny: [1]:"},
		{`{allow: ["fe80::1%eth0"]}`, "zones are not allowed"},
		{`{allow: ["10.0.0.0/8/8"]}`, "not a CIDR prefix"},
		{`{allow: [10.0.0.256]}`, "not an IP address"},
		{`{allow: [10.0.0.0/8], nope: 1}`, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := filtertest.NewFilter(t, New, Name, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestSetAgainstReference compares the range search with a plain loop over the prefixes, on
// random prefix lists and addresses chosen near their edges.
func TestSetAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		var ps []netip.Prefix
		for i := 0; i < 1+rng.IntN(12); i++ {
			ps = append(ps, randPrefix(rng))
		}
		s := newSet(ps)
		for i := 0; i < 200; i++ {
			a := randAddrNear(rng, ps)
			want := false
			for _, p := range ps {
				want = want || p.Contains(a)
			}
			if got := s.contains(a); got != want {
				t.Fatalf("prefixes %v, address %v: got %v, want %v", ps, a, got, want)
			}
		}
	}
}

func randPrefix(rng *rand.Rand) netip.Prefix {
	if rng.IntN(2) == 0 {
		var b [4]byte
		for i := range b {
			b[i] = byte(rng.IntN(4)) // a small space, so prefixes overlap and touch
		}
		return netip.PrefixFrom(netip.AddrFrom4(b), rng.IntN(33)).Masked()
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(3))
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), rng.IntN(129)).Masked()
}

func randAddrNear(rng *rand.Rand, ps []netip.Prefix) netip.Addr {
	p := ps[rng.IntN(len(ps))]
	a := p.Addr()
	switch rng.IntN(4) {
	case 0:
		return a
	case 1:
		if prev := a.Prev(); prev.IsValid() {
			return prev
		}
		return a
	case 2: // last address of the prefix, or the one after it
		last := lastAddr(p)
		if rng.IntN(2) == 0 {
			return last
		}
		if n := last.Next(); n.IsValid() {
			return n
		}
		return last
	}
	if a.Is4() {
		var b [4]byte
		for i := range b {
			b[i] = byte(rng.IntN(4))
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(3))
	}
	return netip.AddrFrom16(b)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

const allocCfg = `{allow: [10.0.0.0/8, 192.168.0.0/16, 172.16.0.0/12, "2001:db8::/32", "fd00::/8"], deny: [10.66.0.0/16, 203.0.113.0/24]}`

func TestZeroAllocs(t *testing.T) {
	f := mustBuild(t, allocCfg)
	for _, client := range []string{"10.1.2.3", "2001:db8::1", "::ffff:10.1.2.3", "10.66.0.1", "8.8.8.8"} {
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
		c.SetClientIP(netip.MustParseAddr(client))
		allocs := testing.AllocsPerRun(200, func() {
			if f.OnRequest(c) == filter.Continue {
				f.OnResponse(c)
			}
		})
		if allocs != 0 {
			t.Errorf("client %s: %v allocations per request, want 0", client, allocs)
		}
	}
}

func BenchmarkIPFilterAccept(b *testing.B) {
	for _, client := range []string{"10.1.2.3", "2001:db8::1"} {
		b.Run(client, func(b *testing.B) {
			f := mustBuild(b, allocCfg)
			c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\n")
			c.SetClientIP(netip.MustParseAddr(client))
			b.ReportAllocs()
			for b.Loop() {
				if f.OnRequest(c) != filter.Continue {
					b.Fatal("denied")
				}
				f.OnResponse(c)
			}
		})
	}
}

// FuzzParsePrefix checks that whatever the config holds, an accepted entry is a masked prefix
// that contains its own first address, and that it never panics.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104", "192.0.2.1", "fe80::1%eth0", "1.2.3.4/0", "::/0", " 10.0.0.0/8 ", "10.1.2.3/8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if p.Masked() != p {
			t.Fatalf("%q: parsed to unmasked %v", s, p)
		}
		if p.Addr().Is4In6() {
			t.Fatalf("%q: parsed to mapped %v", s, p)
		}
		set := newSet([]netip.Prefix{p})
		if !set.contains(p.Addr()) || !set.contains(lastAddr(p)) {
			t.Fatalf("%q: set of %v does not contain its edges", s, p)
		}
	})
}
