package requestid

import (
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	hexRE  = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func build(tb testing.TB, yamlCfg string) (*Filter, error) {
	f, err := filtertest.NewFilter(tb, New, Name, yamlCfg)
	if err != nil {
		return nil, err
	}
	return f.(*Filter), nil
}

func mustBuild(tb testing.TB, yamlCfg string) *Filter {
	return filtertest.MustNewFilter(tb, New, Name, yamlCfg).(*Filter)
}

// sameShape accepts a generated id where the README shows an example of one.
func sameShape(got, want string) bool {
	for _, re := range []*regexp.Regexp{uuidRE, hexRE} {
		if re.MatchString(want) {
			return re.MatchString(got)
		}
	}
	return got == want
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{
		Filter: Name,
		Match:  map[string]func(got, want string) bool{"X-Request-Id": sameShape, "X-Trace-Id": sameShape},
	})
}

func TestOnRequest(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		name     string
		cfg      string
		incoming []string // X-Request-Id values the client sends
		keep     bool     // the incoming id must be kept
		shape    *regexp.Regexp
	}{
		{"generate uuid", `{}`, nil, false, uuidRE},
		{"generate hex", `{format: hex}`, nil, false, hexRE},
		{"keep well-formed", `{}`, []string{"abc-123"}, true, nil},
		{"keep 128 bytes", `{}`, []string{long[:128]}, true, nil},
		{"replace 129 bytes", `{}`, []string{long}, false, uuidRE},
		{"max_length", `{max_length: 4}`, []string{"abcde"}, false, uuidRE},
		{"max_length fits", `{max_length: 5}`, []string{"abcde"}, true, nil},
		{"replace space", `{}`, []string{"a b"}, false, uuidRE},
		{"replace non-ascii", `{}`, []string{"caf\xc3\xa9"}, false, uuidRE},
		{"replace duplicates", `{}`, []string{"one", "two"}, false, uuidRE},
		{"distrust", `{trust_incoming: false}`, []string{"abc"}, false, uuidRE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			raw := "GET / HTTP/1.1\nHost: h\n"
			for _, v := range tt.incoming {
				raw += "X-Request-Id: " + v + "\n"
			}
			c := filtertest.NewCtx(t, raw)
			if got := f.OnRequest(c); got != filter.Continue {
				t.Fatalf("OnRequest = %v, want Continue", got)
			}
			all := c.Request.Header.PeekAll("X-Request-Id")
			if len(all) != 1 {
				t.Fatalf("got %d X-Request-Id headers, want 1", len(all))
			}
			got := string(all[0])
			if tt.keep {
				if got != tt.incoming[0] {
					t.Errorf("id: got %q, want the incoming %q", got, tt.incoming[0])
				}
				return
			}
			if !tt.shape.MatchString(got) {
				t.Errorf("id %q does not match %s", got, tt.shape)
			}
		})
	}
}

func TestOnResponse(t *testing.T) {
	tests := []struct {
		name, cfg, header string
		want              bool
	}{
		{"echo", `{}`, "X-Request-Id", true},
		{"custom header", `{header: x-correlation-id}`, "X-Correlation-Id", true},
		{"off", `{response: false}`, "X-Request-Id", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
			f.OnRequest(c)
			// An upstream that sets its own id must not leave two on the response.
			c.Response.Header.Add(tt.header, "from-upstream")
			f.OnResponse(c)
			sent := string(c.Request.Header.Peek(tt.header))
			got := c.Response.Header.PeekAll(tt.header)
			if !tt.want {
				if len(got) != 1 || string(got[0]) != "from-upstream" {
					t.Errorf("response ids: got %q, want the upstream's alone", got)
				}
				return
			}
			if len(got) != 1 || string(got[0]) != sent {
				t.Errorf("response ids: got %q, want [%q]", got, sent)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, cfg, want string }{
		{"unknown key", `{headers: X-Id}`, "headers"},
		{"empty header", `{header: ""}`, "empty header name"},
		{"bad header", `{header: "X Id"}`, "not allowed in a token"},
		{"special header", `{header: Host}`, "cannot carry a request id"},
		{"framing header", `{header: content-length}`, "cannot carry a request id"},
		{"max_length zero", `{max_length: 0}`, "out of range"},
		{"max_length huge", `{max_length: 5000}`, "out of range"},
		{"format", `{format: ulid}`, "want uuid or hex"},
		{"bool type", `{response: maybe}`, "response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestUnique generates ids from many goroutines and two filters and checks none repeats.
func TestUnique(t *testing.T) {
	fs := []*Filter{mustBuild(t, `{}`), mustBuild(t, `{format: hex}`), mustBuild(t, `{}`)}
	const perG, gs = 2000, 8
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < gs; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]string, 0, perG*len(fs))
			var buf [uuidLen]byte
			for i := 0; i < perG; i++ {
				for _, f := range fs {
					// Compare the 128-bit values, whatever the text format.
					local = append(local, strings.ReplaceAll(string(f.gen.next(&buf)), "-", ""))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range local {
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}

// TestMix62Bijective checks the mixer on a slice of its domain, including both ends.
func TestMix62Bijective(t *testing.T) {
	seen := map[uint64]bool{}
	for _, base := range []uint64{0, mask62 - 50000, 1 << 40} {
		for i := uint64(0); i < 50000; i++ {
			x := mix62(base + i)
			if x > mask62 {
				t.Fatalf("mix62(%d) = %#x is wider than 62 bits", base+i, x)
			}
			if seen[x] {
				t.Fatalf("mix62 collision at %d", base+i)
			}
			seen[x] = true
		}
	}
}

// TestPipeline checks the interaction with a later filter: the upstream sees the id, and a later
// filter's local reply still carries it, because OnResponse runs for every filter that continued.
func TestPipeline(t *testing.T) {
	f := mustBuild(t, `{}`)
	var seenByNext string
	deny := stub{onRequest: func(c *filter.Ctx) filter.Status {
		seenByNext = string(c.Request.Header.Peek("X-Request-Id"))
		return c.Reply(403, []byte("denied"))
	}}
	p := filter.NewPipeline([]filter.Filter{f, deny}, []string{Name, "deny"})
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	p.Run(c, func(*filter.Ctx) { t.Fatal("the upstream must not be called after a local reply") })
	if !uuidRE.MatchString(seenByNext) {
		t.Fatalf("next filter saw id %q, want a generated uuid", seenByNext)
	}
	if got := string(c.Response.Header.Peek("X-Request-Id")); got != seenByNext {
		t.Errorf("local reply id: got %q, want %q", got, seenByNext)
	}
	if c.Response.StatusCode() != 403 {
		t.Errorf("status: got %d, want 403", c.Response.StatusCode())
	}
}

type stub struct {
	onRequest func(*filter.Ctx) filter.Status
}

func (s stub) OnRequest(c *filter.Ctx) filter.Status { return s.onRequest(c) }
func (s stub) OnResponse(*filter.Ctx)                {}

func TestZeroAllocs(t *testing.T) {
	for _, cfg := range []string{`{}`, `{format: hex}`, `{trust_incoming: false}`} {
		f := mustBuild(t, cfg)
		for _, raw := range []string{"GET / HTTP/1.1\nHost: h\n", "GET / HTTP/1.1\nHost: h\nX-Request-Id: abc\n"} {
			c := filtertest.NewCtx(t, raw)
			allocs := testing.AllocsPerRun(200, func() {
				f.OnRequest(c)
				f.OnResponse(c)
			})
			if allocs != 0 {
				t.Errorf("%s, %q: %v allocations per request, want 0", cfg, raw, allocs)
			}
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	f := mustBuild(b, `{trust_incoming: false}`)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}

func BenchmarkPropagate(b *testing.B) {
	f := mustBuild(b, `{}`)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\nX-Request-Id: 5f0c6a1e-93b2-4c7d-a8e1-0b9d3f6c2a47\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}

func BenchmarkGenerateParallel(b *testing.B) {
	f := mustBuild(b, `{}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf [uuidLen]byte
		for pb.Next() {
			f.gen.next(&buf)
		}
	})
}
