package engine

// Strict answers (edge.GuardPlain, edge.GuardTLS): a request head with a bare-LF line end is
// refused with 400 at once, whichever request of its connection it is, and chunk extensions
// over their bounds fail the body at once; valid requests pass whatever their reads.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestHostilePipelinedBareLF sends a head with a bare LF after a valid request on the same
// connection, in the same write and in a later one: the valid request is served, the bad one
// refused with 400 and the connection closed, both at once, and only the valid request
// reaches the backend.
func TestHostilePipelinedBareLF(t *testing.T) {
	rec, addr := startHostile(t)
	const host = "Host: app.test\r\n"
	firsts := []struct{ name, req, golden string }{
		{"after GET", "GET /x HTTP/1.1\r\n" + host + "\r\n", "plain_get"},
		{"after CL POST", "POST /x HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", "cl_post"},
		{"after chunked POST", "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + chunked("hello"), "chunked_post"},
	}
	bads := []struct{ name, req string }{
		{"request line", "GET /x HTTP/1.1\n" + host + "\r\n"},
		{"every line", "GET /x HTTP/1.1\nHost: app.test\n\n"},
		{"blank line", "GET /x HTTP/1.1\r\n" + host + "\n"},
	}
	for _, first := range firsts {
		for _, bad := range bads {
			for _, together := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/together=%v", first.name, bad.name, together), func(t *testing.T) {
					rec.take()
					conn, br := dial(t, addr)
					start := time.Now()
					raw := first.req
					if together {
						raw += bad.req
					}
					got := send(t, conn, br, raw)
					if got.status != 200 || got.closed {
						t.Fatalf("first request: got %d closed=%v, want 200 open", got.status, got.closed)
					}
					second := ""
					if !together {
						second = bad.req
					}
					got = send(t, conn, br, second)
					if got.status != 400 || !got.closed {
						t.Errorf("bad head: got %d closed=%v, want 400 closed", got.status, got.closed)
					}
					if d := time.Since(start); d > time.Second {
						t.Errorf("answered after %v, want at once (read_timeout is 2s)", d.Round(time.Millisecond))
					}
					time.Sleep(20 * time.Millisecond) // stragglers of the refused request, if any
					checkReceived(t, rec, first.golden, false, false)
				})
			}
		}
	}
}

// TestHostileOneByteWrites sends valid requests one byte per write, so that a CRLF is split
// between two reads: they are served, and reach the backend intact.
func TestHostileOneByteWrites(t *testing.T) {
	rec, addr := startHostile(t)
	const host = "Host: app.test\r\n"
	for _, tc := range []struct{ name, req, golden string }{
		{"get", "GET /x HTTP/1.1\r\n" + host + "\r\n", "plain_get"},
		{"chunked with extension", "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n", "chunk_ext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			conn, br := dial(t, addr)
			for i := range len(tc.req) {
				if _, err := io.WriteString(conn, tc.req[i:i+1]); err != nil {
					t.Fatal(err)
				}
			}
			got := send(t, conn, br, "")
			if got.status != 200 || got.closed {
				t.Errorf("got %d closed=%v, want 200 open", got.status, got.closed)
			}
			checkReceived(t, rec, tc.golden, false, false)
		})
	}
}

// TestTLSBareLF: on a TLS listener, a head with bare-LF line ends is refused with 400 at once
// too, after a valid request on the same connection, and after the connection was parked
// idle (server.idle_park_after) and woken; valid requests are served meanwhile.
func TestTLSBareLF(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir, "a", "a.example.com")
	cfgText := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin: ""
  read_timeout: 5s
  idle_park_after: 200ms
  tls: { certificates: [ { cert_file: %q, key_file: %q } ] }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`, cert, key)
	e := engineFromYAML(t, dir, cfgText, zerolog.Nop())
	addr := serveListeners(t, e)[0]
	const good = "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n"
	const bad = "GET / HTTP/1.1\nHost: a.example.com\n\n"
	for _, tc := range []struct {
		name   string
		before []string // requests served on the connection first, each answered 200
		park   bool     // wait until the connection is parked before the bad head
	}{
		{name: "first request"},
		{name: "after a GET", before: []string{good}},
		{name: "after parking", before: []string{good}, park: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example.com", RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for _, req := range tc.before {
				if got := send(t, conn, br, req); got.status != 200 || got.closed {
					t.Fatalf("valid request: got %d closed=%v, want 200 open", got.status, got.closed)
				}
			}
			if tc.park {
				// Parked after 200ms idle; still open, and served, once woken.
				time.Sleep(600 * time.Millisecond)
				if got := send(t, conn, br, good); got.status != 200 || got.closed {
					t.Fatalf("after parking: got %d closed=%v, want 200 open", got.status, got.closed)
				}
				time.Sleep(600 * time.Millisecond)
			}
			start := time.Now()
			got := send(t, conn, br, bad)
			if got.status != 400 || !got.closed {
				t.Errorf("bare LF head: got %d closed=%v, want 400 closed", got.status, got.closed)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answered after %v, want at once (read_timeout is 5s)", d.Round(time.Millisecond))
			}
		})
	}
	// The TLS state still reaches the request: the echo upstream is told the client spoke TLS.
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example.com", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := send(t, conn, bufio.NewReader(conn), good)
	if got.status != 200 || !strings.Contains(got.body, `["X-Forwarded-Proto","https"]`) {
		t.Errorf("got %d %q, want 200 with X-Forwarded-Proto https", got.status, got.body)
	}
}
