package basicauth

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/filters/internal/filtertest"
)

const alicePass = "s3cret:with:colons"

var (
	hashesOnce sync.Once
	aliceHash  []byte
)

// testConsumers: alice (Basic user alice, group admins), guest (no credentials).
func testConsumers(tb testing.TB) *filter.Consumers {
	tb.Helper()
	hashesOnce.Do(func() {
		var err error
		if aliceHash, err = bcrypt.GenerateFromPassword([]byte(alicePass), bcrypt.MinCost); err != nil {
			panic(err)
		}
	})
	cs, err := filter.NewConsumers([]*filter.Consumer{
		{Name: "alice", Groups: []string{"admins"}, Basic: []filter.BasicUser{{User: "alice", Hash: aliceHash}}},
		{Name: "guest"},
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

func mustBuild(tb testing.TB, yamlCfg string) *Filter {
	tb.Helper()
	f, err := build(tb, yamlCfg)
	if err != nil {
		tb.Fatalf("build %s: %v", yamlCfg, err)
	}
	return f.(*Filter)
}

func basic(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

func TestREADME(t *testing.T) {
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	filtertest.RunREADME(t, "README.md", string(src), filtertest.Options{Filter: Name, Consumers: testConsumers(t)})
}

func TestOnRequest(t *testing.T) {
	tests := []struct {
		name       string
		cfg        string
		auth       []string // Authorization fields
		wantStatus int
		wantWho    string
		wantReason string
	}{
		{"consumer user", `{}`, []string{basic("alice:" + alicePass)}, 0, "alice", ""},
		{"scheme case", `{}`, []string{"bAsIc " + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePass))}, 0, "alice", ""},
		{"several spaces", `{}`, []string{"Basic   " + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePass))}, 0, "alice", ""},
		{"htpasswd user", `{htpasswd: testdata/users.htpasswd}`, []string{basic("carol:carol-pass")}, 0, "carol", ""},
		{"missing", `{}`, nil, 401, "", "no credentials"},
		{"empty", `{}`, []string{""}, 401, "", "no credentials"},
		{"wrong password", `{}`, []string{basic("alice:wrong")}, 401, "", "wrong password"},
		{"password prefix", `{}`, []string{basic("alice:s3cret")}, 401, "", "wrong password"},
		{"unknown user", `{}`, []string{basic("nobody:" + alicePass)}, 401, "", "unknown user"},
		{"user case matters", `{}`, []string{basic("Alice:" + alicePass)}, 401, "", "unknown user"},
		{"twice", `{}`, []string{basic("alice:" + alicePass), basic("alice:" + alicePass)}, 401, "", "more than once"},
		{"bearer", `{}`, []string{"Bearer abc"}, 401, "", "malformed"},
		{"no space", `{}`, []string{"Basic" + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePass))}, 401, "", "malformed"},
		{"tab", `{}`, []string{"Basic\t" + base64.StdEncoding.EncodeToString([]byte("alice:"+alicePass))}, 401, "", "malformed"},
		{"scheme only", `{}`, []string{"Basic"}, 401, "", "malformed"},
		{"two tokens", `{}`, []string{basic("alice:"+alicePass) + " x"}, 401, "", "malformed"},
		{"unpadded", `{}`, []string{"Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:"+alicePass+"x"))}, 401, "", "malformed"},
		{"url alphabet", `{}`, []string{"Basic " + base64.URLEncoding.EncodeToString([]byte("alice:??>>"))}, 401, "", "malformed"},
		{"no colon", `{}`, []string{basic("alice")}, 401, "", "malformed"},
		{"empty user", `{}`, []string{basic(":" + alicePass)}, 401, "", "malformed"},
		{"control byte", `{}`, []string{basic("alice:" + alicePass + "\x00")}, 401, "", "malformed"},
		{"oversized", `{}`, []string{basic("alice:" + strings.Repeat("p", 600))}, 401, "", "malformed"},
		{"anonymous without credentials", `{anonymous: guest}`, nil, 0, "guest", ""},
		{"anonymous with wrong ones", `{anonymous: guest}`, []string{basic("alice:wrong")}, 401, "", "wrong password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustBuild(t, tt.cfg)
			c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
			for _, a := range tt.auth {
				c.Request.Header.Add("Authorization", a)
			}
			got := f.OnRequest(c)
			who := ""
			if k := c.Consumer(); k != nil {
				who = k.Name
			}
			if who != tt.wantWho {
				t.Errorf("consumer %q, want %q", who, tt.wantWho)
			}
			if tt.wantStatus == 0 {
				if got != filter.Continue {
					t.Fatalf("refused: %d %v", c.Response.StatusCode(), c.Err())
				}
				if len(c.Request.Header.Peek("Authorization")) > 0 {
					t.Errorf("Authorization forwarded; hide_credentials is on by default")
				}
				return
			}
			if got != filter.Stop || c.Response.StatusCode() != tt.wantStatus {
				t.Fatalf("got %v %d, want Stop %d", got, c.Response.StatusCode(), tt.wantStatus)
			}
			if w := string(c.Response.Header.Peek("WWW-Authenticate")); w != `Basic realm="weir", charset="UTF-8"` {
				t.Errorf("WWW-Authenticate = %q", w)
			}
			if c.Err() == nil || !strings.Contains(c.Err().Error(), tt.wantReason) {
				t.Errorf("reason %v, want %q", c.Err(), tt.wantReason)
			}
			if strings.Contains(c.Err().Error(), "s3cret") {
				t.Errorf("reason quotes the password: %v", c.Err())
			}
		})
	}
}

// TestCache checks that a verified pair is answered from the cache, that a wrong password is
// never answered from it, and that entries expire.
func TestCache(t *testing.T) {
	f := mustBuild(t, `{cache_ttl: 50ms, cache_size: 2}`)
	run := func(auth string) filter.Status {
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
		c.Request.Header.Set("Authorization", auth)
		return f.OnRequest(c)
	}
	good := basic("alice:" + alicePass)
	if run(good) != filter.Continue {
		t.Fatal("refused")
	}
	if len(f.cache.entries) != 1 {
		t.Fatalf("cache holds %d entries, want 1", len(f.cache.entries))
	}
	// With the semaphore full, only a cached pair can pass.
	for range cap(f.sem) {
		f.sem <- struct{}{}
	}
	if run(good) != filter.Continue {
		t.Error("a cached pair was not answered from the cache")
	}
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	c.Request.Header.Set("Authorization", basic("alice:wrong"))
	if f.OnRequest(c) != filter.Stop || c.Response.StatusCode() != 503 || string(c.Response.Header.Peek("Retry-After")) != "1" {
		t.Errorf("over max_concurrent: got %d, want 503 with Retry-After: 1", c.Response.StatusCode())
	}
	time.Sleep(80 * time.Millisecond)
	if run(good) != filter.Stop {
		t.Error("an expired entry was still used")
	}
	for range cap(f.sem) {
		<-f.sem
	}
	for i := range 5 {
		f.cache.put([32]byte{byte(i)}, nil)
	}
	if n := len(f.cache.entries); n > 2 {
		t.Errorf("cache holds %d entries, want at most cache_size 2", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	f := mustBuild(t, `{cache_ttl: 0s}`)
	if f.cache != nil {
		t.Fatal("cache_ttl 0 keeps a cache")
	}
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\n")
	c.Request.Header.Set("Authorization", basic("alice:"+alicePass))
	if f.OnRequest(c) != filter.Continue {
		t.Fatal("refused")
	}
}

func TestParseHtpasswd(t *testing.T) {
	good := "$2y$04$dRKSmzRaxK1.zTu09QqhSOhrlZ93BOBB3R393O/grPEuPoQk3/9zW"
	tests := []struct{ src, want string }{
		{"# c\n\nu:" + good + "\r\nv:" + good + "\n", ""},
		{"u:$apr1$abc$def\n", "line 1: user \"u\": MD5"},
		{"\nu:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "line 2: user \"u\": SHA-1"},
		{"u:$6$salt$hash\n", "SHA-crypt"},
		{"u:plaintext\n", "not a bcrypt hash"},
		{"u:abCDefGHijKLm\n", "not a bcrypt hash"},
		{"u:$2y$04$short\n", "malformed bcrypt hash"},
		{"u\n", "line 1: want user:hash"},
		{":" + good + "\n", "empty user name"},
		{"u:" + good + "\nu:" + good + "\n", "line 2: user \"u\" is also on line 1"},
		{strings.Repeat("x", 2000) + ":" + good, "longer than"},
	}
	for _, tt := range tests {
		users, err := ParseHtpasswd([]byte(tt.src))
		if tt.want == "" {
			if err != nil || len(users) != 2 || users[1].Line != 4 {
				t.Errorf("ParseHtpasswd(%q) = %v, %v", tt.src, users, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseHtpasswd(%q): got %v, want %q", tt.src, err, tt.want)
			continue
		}
		for _, secret := range []string{"abc$def", "W6ph5", "plaintext", "abCDef", "$short", "salt$hash"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error quotes the hash: %v", err)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	conflict := filepath.Join(dir, "conflict")
	if err := os.WriteFile(conflict, []byte("alice:$2y$04$dRKSmzRaxK1.zTu09QqhSOhrlZ93BOBB3R393O/grPEuPoQk3/9zW\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	md5 := filepath.Join(dir, "md5")
	if err := os.WriteFile(md5, []byte("\n\nbob:$apr1$xyzzy$Q1w2E3r4T5y6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ cfg, want string }{
		{`{realm: 'a"b'}`, "realm"},
		{`{htpasswd: ` + filepath.Join(dir, "missing") + `}`, "no such file"},
		{`{htpasswd: ` + md5 + `}`, "line 3: user \"bob\": MD5 hashes are refused"},
		{`{htpasswd: ` + conflict + `}`, `user "alice" is also a Basic user of consumer "alice"`},
		{`{anonymous: nobody}`, "not declared"},
		{`{max_concurrent: -1}`, "max_concurrent"},
		{`{cache_ttl: -1s}`, "cache_ttl"},
		{`{cache_ttl: 10}`, "cache_ttl"},
		{`{cache_size: -1}`, "cache_size"},
		{`{users: []}`, `unknown key "users"`},
	}
	for _, tt := range tests {
		t.Run(tt.cfg, func(t *testing.T) {
			_, err := build(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "xyzzy") {
				t.Errorf("error quotes the hash: %v", err)
			}
		})
	}
}

func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{basic("alice:" + alicePass), "Basic", "basic  Og==", "Basic YQ==", "BASIC YTpi", "Basic YTpi=", "Bearer x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var buf [maxCredentials]byte
		user, pass, ok := ParseBasic([]byte(v), buf[:])
		if !ok {
			return
		}
		if len(user) == 0 || strings.ContainsAny(string(user), ":") {
			t.Fatalf("ParseBasic(%q): user %q", v, user)
		}
		// What was accepted must be exactly the canonical encoding of what it decoded to.
		_, tok, _ := strings.Cut(v, " ")
		tok = strings.TrimLeft(tok, " ")
		if base64.StdEncoding.EncodeToString([]byte(string(user)+":"+string(pass))) != tok {
			t.Fatalf("ParseBasic(%q) accepted a non-canonical token", v)
		}
	})
}

func FuzzParseHtpasswd(f *testing.F) {
	f.Add("u:$2y$04$dRKSmzRaxK1.zTu09QqhSOhrlZ93BOBB3R393O/grPEuPoQk3/9zW\n# c\n")
	f.Add("u:$apr1$x$y\n")
	f.Add("a:b:c\n\r\n")
	f.Fuzz(func(t *testing.T, src string) {
		users, err := ParseHtpasswd([]byte(src))
		if err != nil {
			return
		}
		for _, u := range users {
			if u.User == "" || strings.Contains(u.User, ":") || checkBcrypt(string(u.Hash)) != nil {
				t.Fatalf("accepted %+v", u)
			}
		}
	})
}

func TestCachedPathAllocs(t *testing.T) {
	f := mustBuild(t, `{hide_credentials: false}`)
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nAuthorization: "+basic("alice:"+alicePass)+"\n")
	if f.OnRequest(c) != filter.Continue {
		t.Fatal("refused")
	}
	if a := testing.AllocsPerRun(200, func() { f.OnRequest(c) }); a != 0 {
		t.Errorf("cached path allocates %v times per request, want 0", a)
	}
}

func BenchmarkBasicAuthCached(b *testing.B) {
	f := mustBuild(b, `{hide_credentials: false}`)
	c := filtertest.NewCtx(b, "GET / HTTP/1.1\nHost: h\nUser-Agent: bench\nAuthorization: "+basic("alice:"+alicePass)+"\n")
	if f.OnRequest(c) != filter.Continue {
		b.Fatal("refused")
	}
	b.ReportAllocs()
	for b.Loop() {
		f.OnRequest(c)
		f.OnResponse(c)
	}
}

// TestConcurrentMissesShareOneCheck: when a busy client's cache entry is missing or expired,
// all its requests in flight miss at once; they must share one password check instead of
// competing for the few bcrypt slots (which answered most of them 503 before).
func TestConcurrentMissesShareOneCheck(t *testing.T) {
	f := mustBuild(t, "{ max_concurrent: 1, cache_ttl: 1m }")
	const n = 32
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nAuthorization: "+basic("alice:"+alicePass)+"\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if f.OnRequest(c) == filter.Continue {
				statuses <- 200
			} else {
				statuses <- c.Response.StatusCode()
			}
		}()
	}
	close(start)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("a request with the right password got %d", s)
		}
	}
	// Wrong passwords still wait for nobody's verdict but their own.
	c := filtertest.NewCtx(t, "GET / HTTP/1.1\nHost: h\nAuthorization: "+basic("alice:wrong")+"\n")
	if f.OnRequest(c) != filter.Stop || c.Response.StatusCode() != 401 {
		t.Errorf("wrong password: status %d, want 401", c.Response.StatusCode())
	}
}
