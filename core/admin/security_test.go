package admin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/core/engine"
)

// startAdmin serves an engine on cfg through an admin server with opts, and returns the admin
// address, the config path and the engine's log.
func startAdmin(t *testing.T, cfg string, opts Options) (string, string, *syncBuffer) {
	t.Helper()
	_, addr, path, logBuf := startEngineAdmin(t, cfg, opts)
	return addr, path, logBuf
}

// startEngineAdmin is startAdmin that returns the engine too. The engine's own listener is not
// started (see serveEngine).
func startEngineAdmin(t *testing.T, cfg string, opts Options) (*engine.Engine, string, string, *syncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logBuf := &syncBuffer{}
	log := zerolog.New(logBuf)
	eng, err := engine.New(path, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Shutdown(context.Background()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := New(eng, opts, log)
	go a.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = a.Shutdown() })
	return eng, ln.Addr().String(), path, logBuf
}

// raw sends req byte for byte (header names as written, any Host) and returns the status and
// body of the answer.
func raw(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, strings.ReplaceAll(req, "\n", "\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %q: %v", req, err)
	}
	var status int
	if _, err := fmt.Sscanf(line, "HTTP/1.1 %d", &status); err != nil {
		t.Fatalf("status line %q: %v", line, err)
	}
	var body bytes.Buffer
	_, _ = io.Copy(&body, br) // "Connection: close" in every request below
	return status, body.String()
}

const plainCfg = `
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: hello, upstream: demo } ]
`

// TestCSRF: a state-changing request needs a JSON content type, which no form and no "simple"
// cross-origin fetch can send, and a browser's Origin and Sec-Fetch-Site must say it came from
// the admin API's own origin. curl and scripts send neither header and pass.
func TestCSRF(t *testing.T) {
	addr, _, _ := startAdmin(t, plainCfg, Options{})
	_, port, _ := net.SplitHostPort(addr)
	self := "http://127.0.0.1:" + port
	tests := []struct {
		name    string
		headers string // extra header lines, "\n"-separated
		want    int
	}{
		{"curl with json", "Content-Type: application/json\n", 200},
		{"json with charset", "Content-Type: application/json;charset=utf-8\n", 200},
		{"json with charset and spaces", "Content-Type: application/json ; charset=UTF-8\n", 200},
		{"json upper case", "Content-Type: Application/JSON\n", 200},
		{"header names in odd case", "content-TYPE: application/json\norigin: " + self + "\n", 200},
		{"same origin", "Content-Type: application/json\nOrigin: " + self + "\n", 200},
		{"same origin fetch metadata", "Content-Type: application/json\nOrigin: " + self + "\nSec-Fetch-Site: same-origin\n", 200},
		{"typed by the user", "Content-Type: application/json\nSec-Fetch-Site: none\n", 200},

		{"no content type", "", 415},
		{"empty content type", "Content-Type: \n", 415},
		{"text/plain", "Content-Type: text/plain\n", 415},
		{"text/plain without origin", "Content-Type: text/plain;charset=utf-8\n", 415},
		{"form", "Content-Type: application/x-www-form-urlencoded\n", 415},
		{"multipart form", "Content-Type: multipart/form-data; boundary=x\n", 415},
		{"json look-alike", "Content-Type: application/jsonx\n", 415},
		{"json suffix", "Content-Type: application/json-seq\n", 415},
		{"text/json", "Content-Type: text/json\n", 415},
		{"unparsable", "Content-Type: application/json; ;;\n", 415},

		{"form from a foreign page", "Content-Type: application/x-www-form-urlencoded\nOrigin: http://evil.example\n", 403},
		{"json from a foreign page", "Content-Type: application/json\nOrigin: http://evil.example\n", 403},
		{"origin in odd case", "Content-Type: application/json\nORIGIN: http://evil.example\n", 403},
		{"null origin", "Content-Type: application/json\nOrigin: null\n", 403},
		{"origin with trailing slash", "Content-Type: application/json\nOrigin: " + self + "/\n", 403},
		{"origin with path", "Content-Type: application/json\nOrigin: " + self + "/reload\n", 403},
		{"origin on another port", "Content-Type: application/json\nOrigin: http://127.0.0.1:1\n", 403},
		{"origin without port", "Content-Type: application/json\nOrigin: http://127.0.0.1\n", 403},
		{"origin on a look-alike name", "Content-Type: application/json\nOrigin: http://127.0.0.1." + "evil.example:" + port + "\n", 403},
		{"origin with user", "Content-Type: application/json\nOrigin: http://u@127.0.0.1:" + port + "\n", 403},
		{"origin of another name for loopback", "Content-Type: application/json\nOrigin: http://localhost:" + port + "\n", 403},
		{"origin not a url", "Content-Type: application/json\nOrigin: 127.0.0.1:" + port + "\n", 403},
		{"cross-site fetch metadata", "Content-Type: application/json\nSec-Fetch-Site: cross-site\n", 403},
		{"same-site fetch metadata", "Content-Type: application/json\nSec-Fetch-Site: same-site\n", 403},
		{"same origin but cross-site metadata", "Content-Type: application/json\nOrigin: " + self + "\nSec-Fetch-Site: cross-site\n", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := "POST /reload HTTP/1.1\nHost: 127.0.0.1:" + port + "\n" + tt.headers + "Content-Length: 0\nConnection: close\n\n"
			if got, body := raw(t, addr, req); got != tt.want {
				t.Errorf("POST /reload with %q = %d %s, want %d", tt.headers, got, body, tt.want)
			}
		})
	}
	// Every state-changing method is checked, whatever its case, before routing.
	for _, m := range []string{"PUT", "DELETE", "PATCH", "post"} {
		req := m + " /reload HTTP/1.1\nHost: 127.0.0.1\nContent-Type: text/plain\nContent-Length: 0\nConnection: close\n\n"
		if got, _ := raw(t, addr, req); got != 415 {
			t.Errorf("%s /reload with text/plain = %d, want 415", m, got)
		}
	}
	// Reading stays simple: no content type needed.
	if got, _ := raw(t, addr, "GET /healthz HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n"); got != 200 {
		t.Errorf("GET /healthz = %d, want 200", got)
	}
}

// TestHostCheck: a page on a name whose DNS the attacker controls (rebound to 127.0.0.1) sends
// its own name as Host; only names of the admin listener are served.
func TestHostCheck(t *testing.T) {
	addr, _, _ := startAdmin(t, plainCfg, Options{Hosts: []string{"weir-admin.internal", "[fd00::5]"}, Pprof: true})
	_, port, _ := net.SplitHostPort(addr)
	tests := []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 200},
		{"127.0.0.1", 200},
		{"localhost:" + port, 200},
		{"LocalHost:" + port, 200},
		{"localhost", 200},
		{"[::1]:" + port, 200},
		{"[::1]", 200},
		{"[::ffff:127.0.0.1]:" + port, 200},
		{"127.0.0.2:" + port, 200},
		{"weir-admin.internal", 200},
		{"WEIR-ADMIN.internal:8443", 200},
		{"[fd00::5]:" + port, 200},

		{"attacker.example", 403},
		{"attacker.example:" + port, 403},
		{"127.0.0.1.evil.example", 403},
		{"127.0.0.1.evil.example:" + port, 403},
		{"localhost.evil.example", 403},
		{"localhost.", 403},
		{"weir-admin.internal.evil.example", 403},
		{"evil-weir-admin.internal", 403},
		{"127.1:" + port, 403},
		{"0x7f000001", 403},
		{"::1", 403},
		{"[::1", 403},
		{"[::1]x", 403},
		{"[localhost]", 403},
		{"127.0.0.1:", 403},
		{"127.0.0.1:http", 403},
		{"127.0.0.1:99999", 403},
		{"127.0.0.1:+80", 403},
		{":" + port, 403},
		{"10.0.0.5", 403},
	}
	for _, tt := range tests {
		for _, path := range []string{"/config", "/debug/pprof/"} {
			req := "GET " + path + " HTTP/1.1\nHost: " + tt.host + "\nConnection: close\n\n"
			if got, body := raw(t, addr, req); !hostAnswer(got, tt.want) {
				t.Errorf("GET %s with Host %q = %d %.80s, want %d", path, tt.host, got, body, tt.want)
			}
		}
	}
	for _, req := range []string{
		// No Host at all, and an empty one.
		"GET /config HTTP/1.1\nConnection: close\n\n",
		"GET /config HTTP/1.1\nHost: \nConnection: close\n\n",
		"GET /config HTTP/1.0\n\n",
		// An absolute request target names the host too.
		"GET http://attacker.example/config HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n",
		// A rebound page's reload, even with a JSON body.
		"POST /reload HTTP/1.1\nHost: attacker.example:" + port + "\nContent-Type: application/json\nOrigin: http://attacker.example:" + port + "\nContent-Length: 0\nConnection: close\n\n",
	} {
		if got, body := raw(t, addr, req); !hostAnswer(got, 403) {
			t.Errorf("%q = %d %.80s, want 403", req, got, body)
		}
	}
}

// hostAnswer compares the status of a request with a Host under test with want. A refusal may
// come as 400 too: fasthttp answers that itself to a Host that is not a valid authority.
func hostAnswer(got, want int) bool {
	return got == want || (want == 403 && got == 400)
}

// TestAllowedHost covers the address the connection arrived on, which a listener on all
// interfaces cannot know in advance.
func TestAllowedHost(t *testing.T) {
	local := &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 9901}
	local6 := &net.TCPAddr{IP: net.ParseIP("fd00::7"), Port: 9901}
	tests := []struct {
		host  string
		local net.Addr
		want  bool
	}{
		{"10.0.0.5:9901", local, true},
		{"10.0.0.5", local, true},
		{"[::ffff:10.0.0.5]:9901", local, true},
		{"10.0.0.6:9901", local, false},
		{"[fd00::7]:9901", local6, true},
		{"[fd00::8]:9901", local6, false},
		{"127.0.0.1:9901", local, true},
		{"attacker.example", local, false},
		{"", local, false},
		{"10.0.0.5", nil, false},
		// Malformed values fasthttp may already refuse; refused here too.
		{"[::1]", nil, true},
		{"[::1]:9901", nil, true},
		{"[::1", nil, false},
		{"[::1]x", nil, false},
		{"[::1]:", nil, false},
		{"[127.0.0.1]", nil, false},
		{"[localhost]:1", nil, false},
		{"127.0.0.1:", nil, false},
		{"127.0.0.1:+80", nil, false},
		{"127.0.0.1:65536", nil, false},
		{"127.0.0.1:1:2", nil, false},
		{"localhost:080", nil, true},
	}
	for _, tt := range tests {
		if got := allowedHost([]byte(tt.host), tt.local, nil); got != tt.want {
			t.Errorf("allowedHost(%q, %v) = %v, want %v", tt.host, tt.local, got, tt.want)
		}
	}
}

// TestReadTimeout: a client that sends part of a request, even one byte at a time, is cut
// off after the read timeout instead of holding the connection.
func TestReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	addr, _, _ := startAdmin(t, plainCfg, Options{ReadTimeout: timeout})
	for _, trickle := range []bool{false, true} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		if trickle {
			go func() {
				for {
					select {
					case <-done:
						return
					case <-time.After(50 * time.Millisecond):
						if _, err := io.WriteString(conn, "X"); err != nil {
							return
						}
					}
				}
			}()
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, conn) // until the server closes the connection
		elapsed := time.Since(start)
		close(done)
		conn.Close()
		// The server closes with the trickled bytes unread, so the kernel may answer the next
		// byte with a reset rather than the client reading EOF: both mean the server closed it.
		// Only running into the client's own deadline means it did not.
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("trickle=%v: connection not closed by the server: %v", trickle, err)
		}
		if elapsed < timeout/2 || elapsed > 3*time.Second {
			t.Errorf("trickle=%v: closed after %s, want about %s", trickle, elapsed, timeout)
		}
	}
}

const secretCfg = `
server: { admin_token: s3cret-admin }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes:
  - name: hello
    match: { path: /hello, headers: { X-Internal-Auth: s3cret-route } }
    upstream: demo
    filters:
      - headers:
          request:
            set:
              Authorization: Bearer upstream-s3cret
              Proxy-Authorization: Basic dXNlcjpzM2NyZXQ=
              Cookie: sid=s3cret-cookie
              x-api-key: s3cret-key
              X-Trace: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.s3cret-jwt-sig
              X-Plain: visible-value
`

// TestSecretsNotShown: secret values stay out of /config and /routes, and a rejected reload
// whose config quotes one (the reproduction: a bearer token with a stray newline) keeps it out
// of the answer, /reloads and the log.
func TestSecretsNotShown(t *testing.T) {
	addr, path, logBuf := startAdmin(t, secretCfg, Options{Token: "s3cret-admin"})
	base := "http://" + addr
	secrets := []string{"s3cret-admin", "s3cret-route", "upstream-s3cret", "dXNlcjpzM2NyZXQ=", "s3cret-cookie", "s3cret-key", "s3cret-jwt-sig"}
	check := func(what, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows %q:\n%s", what, s, text)
			}
		}
	}
	for _, p := range []string{"/config", "/routes"} {
		status, body := do(t, "GET", base+p, "s3cret-admin")
		if status != 200 {
			t.Fatalf("GET %s = %d %s", p, status, body)
		}
		check(p, body)
	}
	if _, body := do(t, "GET", base+"/config", "s3cret-admin"); !strings.Contains(body, "visible-value") {
		t.Errorf("/config hides an ordinary value:\n%s", body)
	}

	bad := strings.Replace(secretCfg, "Authorization: Bearer upstream-s3cret", `Authorization: "Bearer upstream-s3cret\n"`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	status, body := do(t, "POST", base+"/reload", "s3cret-admin")
	if status != 422 || !strings.Contains(body, "CR, LF or NUL") {
		t.Errorf("POST /reload = %d %s, want 422 naming the bad byte", status, body)
	}
	check("POST /reload", body)
	_, body = do(t, "GET", base+"/reloads", "s3cret-admin")
	check("/reloads", body)
	if !strings.Contains(logBuf.String(), "config reload rejected") {
		t.Errorf("no rejected reload in the log:\n%s", logBuf.String())
	}
	check("the log", logBuf.String())
}

// syncBuffer is a log sink read by the test while the server writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMalformedAnsweredAtOnce: a bare-LF head and a TLS handshake sent to the admin listener are
// answered 400 at once, not held until the read timeout (10 s here).
func TestMalformedAnsweredAtOnce(t *testing.T) {
	addr, _, _ := startAdmin(t, plainCfg, Options{ReadTimeout: 10 * time.Second})
	for name, req := range map[string]string{
		"bare LF head":  "GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
		"TLS handshake": "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 40),
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400 ") {
			t.Errorf("%s: answered %q, %v; want 400 at once", name, line, err)
		}
	}
}
