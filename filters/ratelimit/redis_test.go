package ratelimit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

// redisServer is a redis-server the test started on a loopback port, without persistence.
type redisServer struct {
	addr string
	port int
	args []string
	cmd  *exec.Cmd
}

// startRedis runs redis-server on a free loopback port until cleanup. Without redis-server
// the test is skipped, except where WEIR_REQUIRE_ALL is set (CI installs it).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("WEIR_REQUIRE_ALL") != "" {
			t.Fatal("redis-server is not installed (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed; apt-get install redis-server to run the Redis tests")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &redisServer{addr: fmt.Sprintf("127.0.0.1:%d", port), port: port, args: args}
	r.start(t)
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) start(t testing.TB) {
	t.Helper()
	args := append([]string{"--port", fmt.Sprint(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes"}, r.args...)
	r.cmd = exec.Command("redis-server", args...)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatal("redis-server did not start listening")
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

func redisCfg(addr, extra string) string {
	return fmt.Sprintf(`{mode: redis, redis: {addr: %q, timeout: 200ms}%s, `, addr, extra)
}

// TestRedisMatchesLocal: the script gives the same decisions and headers as the local store.
func TestRedisMatchesLocal(t *testing.T) {
	r := startRedis(t)
	limits := `limits: [{rate: 5, per: 10s}, {rate: 8, per: 1h, name: hour}]}`
	rf := mustBuild(t, redisCfg(r.addr, "")+limits, nil)
	lf := mustBuild(t, "{"+limits, nil)
	c := ctx(t, "192.0.2.1", "")
	for i := 0; i < 8; i++ {
		ls := run(lf, c)
		lh := string(c.Response.Header.Peek("RateLimit")) + " | " + string(c.Response.Header.Peek("Retry-After"))
		rs := run(rf, c)
		rh := string(c.Response.Header.Peek("RateLimit")) + " | " + string(c.Response.Header.Peek("Retry-After"))
		if ls != rs || lh != rh {
			t.Fatalf("request %d: local %d %q, redis %d %q", i, ls, lh, rs, rh)
		}
	}
}

// TestRedisSharedByTwoGateways: two filters with their own stores (two gateways) share one
// limit through Redis.
func TestRedisSharedByTwoGateways(t *testing.T) {
	r := startRedis(t)
	cfg := redisCfg(r.addr, "") + `key: "header:X-Api-Key", rate: 10, per: 1m}`
	a := mustBuild(t, cfg, nil)
	b := mustBuild(t, cfg, nil)
	if a.remote == b.remote {
		t.Fatal("the two filters share a store; want one each")
	}
	allowed := 0
	for i := 0; i < 20; i++ {
		f := a
		if i%2 == 1 {
			f = b
		}
		if run(f, ctx(t, fmt.Sprintf("192.0.2.%d", i), "X-Api-Key: k1\n")) == 200 {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("allowed %d across two gateways, want 10", allowed)
	}
}

// logBuffer collects log lines safely.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRedisFailPolicy: with Redis gone, fail open lets requests through and fail closed
// answers 503; one log line and one transition each way, not one per request; limiting is
// correct again as soon as Redis answers.
func TestRedisFailPolicy(t *testing.T) {
	for _, tc := range []struct {
		fail string
		want int
	}{{"open", 200}, {"closed", 503}} {
		t.Run(tc.fail, func(t *testing.T) {
			r := startRedis(t)
			var logs logBuffer
			tree, err := parse(redisCfg(r.addr, ", fail: "+tc.fail) + `rate: 2, per: 1m}`)
			if err != nil {
				t.Fatal(err)
			}
			ff, err := New(filter.Env{Route: "api", Filter: Name, Log: zerolog.New(&logs)}, decoder(tree))
			if err != nil {
				t.Fatal(err)
			}
			f := ff.(*Filter)
			defer f.Close()
			c := ctx(t, "192.0.2.1", "")
			if got := run(f, c); got != 200 {
				t.Fatalf("with redis: %d", got)
			}
			r.stop()
			for i := 0; i < 20; i++ {
				if got := run(f, c); got != tc.want {
					t.Fatalf("redis down, request %d: %d, want %d", i, got, tc.want)
				}
			}
			if got := string(c.Response.Header.Peek("RateLimit-Policy")); got != `"default";q=2;w=60` {
				t.Errorf("RateLimit-Policy while down: %q", got)
			}
			if got := c.Response.Header.Peek("RateLimit"); got != nil {
				t.Errorf("RateLimit while down: %q, want none", got)
			}
			r.start(t)
			back := time.Now()
			// The restarted Redis has no state: 2 allowed, then limited. Requests that still
			// met the fail policy while the client reconnected are skipped.
			var got []int
			for len(got) < 3 && time.Since(back) < 2*time.Second {
				before := f.failed.Load()
				s := run(f, c)
				if f.failed.Load() == before {
					got = append(got, s)
				}
			}
			if fmt.Sprint(got) != "[200 200 429]" {
				t.Fatalf("after redis returned: %v, want [200 200 429]", got)
			}
			if d := time.Since(back); d > time.Second {
				t.Errorf("limiting resumed %v after redis returned, want within 1s", d)
			}
			st := f.Stats()
			if st.Transitions != 2 || st.RedisErrors < 20 || st.Failed < 20 {
				t.Errorf("stats %+v: want 2 transitions and >= 20 errors and failed decisions", st)
			}
			out := logs.String()
			if n := strings.Count(out, "redis unreachable"); n != 1 {
				t.Errorf("%d 'unreachable' log lines, want 1:\n%s", n, out)
			}
			if n := strings.Count(out, "redis answers again"); n != 1 {
				t.Errorf("%d 'answers again' log lines, want 1:\n%s", n, out)
			}
		})
	}
}

// TestRedisPassword: the password from the environment works; a wrong one fails the
// decision, and the log line names no password.
func TestRedisPassword(t *testing.T) {
	r := startRedis(t, "--requirepass", "right-pw")
	t.Setenv("WEIR_TEST_REDIS_PW", "right-pw")
	good := mustBuild(t, fmt.Sprintf(`{mode: redis, redis: {addr: %q, password_env: WEIR_TEST_REDIS_PW},
		fail: closed, rate: 2, per: 1m}`, r.addr), nil)
	if got := run(good, ctx(t, "192.0.2.1", "")); got != 200 {
		t.Fatalf("right password: %d", got)
	}
	var logs logBuffer
	tree, _ := parse(redisCfg(r.addr, ", fail: closed") + `rate: 2, per: 1m}`)
	tree.(map[string]any)["redis"].(map[string]any)["password"] = "wrong-s3cret"
	ff, err := New(filter.Env{Route: "api", Filter: Name, Log: zerolog.New(&logs)}, decoder(tree))
	if err != nil {
		t.Fatal(err)
	}
	f := ff.(*Filter)
	defer f.Close()
	if got := run(f, ctx(t, "192.0.2.1", "")); got != 503 {
		t.Fatalf("wrong password, fail closed: %d", got)
	}
	if out := logs.String(); strings.Contains(out, "s3cret") || !strings.Contains(out, "unreachable") {
		t.Fatalf("log:\n%s", out)
	}
}

func BenchmarkRedisAccept(b *testing.B) {
	r := startRedis(b)
	f := mustBuild(b, redisCfg(r.addr, "")+`key: "header:X-Api-Key", limits: [{rate: 1000000, per: 1s}, {rate: 100000000, per: 24h}]}`, nil)
	c := ctx(b, "", "X-Api-Key: k-123\n")
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}

// BenchmarkRedisAcceptParallel: throughput of the Redis limiter with many clients at once.
func BenchmarkRedisAcceptParallel(b *testing.B) {
	r := startRedis(b)
	f := mustBuild(b, redisCfg(r.addr, "")+`key: client_ip, rate: 1000000, per: 1s}`, nil)
	var mu sync.Mutex
	n := 0
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		n++
		c := ctx(b, fmt.Sprintf("10.1.%d.%d", n/250, n%250), "")
		mu.Unlock()
		for pb.Next() {
			f.OnRequest(c)
			f.OnResponse(c)
		}
	})
}

func parse(cfg string) (any, error) { return filtertest.ParseYAML(cfg) }
