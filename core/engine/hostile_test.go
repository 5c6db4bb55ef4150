package engine

// The hostile-input suite: raw bytes over TCP to a gateway running in-process on 127.0.0.1, in
// front of a recording backend that keeps exactly the bytes it receives. Each case states the
// status the client must get, whether the gateway must close the connection, and what reached
// the backend: nothing for every rejected case, and for every accepted case exactly the bytes
// of its golden file under testdata/hostile/ (go test -run Hostile -update rewrites them).
// After every case a clean canary request must pass unchanged, on a fresh connection and, when
// the gateway kept the case's connection open, on that one too.

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// backendOK is the recording backend's normal answer.
const backendOK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

// recorder is a raw TCP backend. It frames requests itself (Content-Length or chunked) so that
// it can answer each one, and keeps every byte it read, one entry per request; bytes that never
// formed a whole request (the gateway gave up mid-way) are kept as an entry of their own.
type recorder struct {
	ln net.Listener

	mu      sync.Mutex
	entries []string
	answer  string // what the next request is answered with
	late    string // written 50ms after the answer, as a separate segment
	closeAf bool   // close the connection after answering
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, answer: backendOK, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(c)
	}
}

// setAnswer makes the backend answer every following request with resp, closing the connection
// after it when closeAfter is set.
func (r *recorder) setAnswer(resp, late string, closeAfter bool) {
	r.mu.Lock()
	r.answer, r.late, r.closeAf = resp, late, closeAfter
	r.mu.Unlock()
}

// take returns the entries recorded so far and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries
	r.entries = nil
	return e
}

// tee keeps what the connection's reader consumed.
type tee struct {
	r   io.Reader
	buf bytes.Buffer
}

func (t *tee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf.Write(p[:n])
	return n, err
}

func (r *recorder) serve(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	src := &tee{r: c}
	// One byte at a time, so that what the tee holds is exactly what framed the request and
	// nothing of the next one; a test backend can afford it.
	br := bufio.NewReaderSize(oneByte{src}, 16)
	for {
		err := readRequest(br)
		raw := src.buf.String()
		src.buf.Reset()
		if raw != "" {
			if err != nil {
				raw = "[incomplete: " + err.Error() + "]\n" + raw
			}
			r.mu.Lock()
			r.entries = append(r.entries, raw)
			r.mu.Unlock()
		}
		if err != nil {
			return
		}
		r.mu.Lock()
		answer, late, closeAfter := r.answer, r.late, r.closeAf
		r.mu.Unlock()
		if _, err := io.WriteString(c, answer); err != nil || closeAfter {
			return
		}
		if late != "" {
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(c, late); err != nil {
				return
			}
		}
	}
}

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// readRequest consumes one request, framed as RFC 9112 says: chunked when Transfer-Encoding
// says so, else Content-Length, else no body.
func readRequest(br *bufio.Reader) error {
	cl, chunked := -1, false
	first := true
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if first && line == "" && errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("read head: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if first {
			first = false
			continue
		}
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			n, err := strconv.Atoi(value)
			if err != nil {
				return fmt.Errorf("content-length %q: %w", value, err)
			}
			cl = n
		case "transfer-encoding":
			chunked = strings.EqualFold(value, "chunked")
		}
	}
	switch {
	case chunked:
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return fmt.Errorf("read chunk size: %w", err)
			}
			size, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
			n, err := strconv.ParseInt(size, 16, 32)
			if err != nil {
				return fmt.Errorf("chunk size %q: %w", size, err)
			}
			if n == 0 {
				for { // trailer section
					l, err := br.ReadString('\n')
					if err != nil {
						return fmt.Errorf("read trailer: %w", err)
					}
					if l == "\r\n" || l == "\n" {
						return nil
					}
				}
			}
			if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
				return fmt.Errorf("read chunk: %w", err)
			}
		}
	case cl > 0:
		if _, err := io.CopyN(io.Discard, br, int64(cl)); err != nil {
			return fmt.Errorf("read body: %w", err)
		}
	}
	return nil
}

const hostileConfig = `
server:
  listen: "127.0.0.1:0"
  admin: ""
  drain_timeout: 2s
  read_timeout: 2s
  max_header_bytes: 4096
  max_body_bytes: 8KiB
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, idle_timeout: 5s }
routes:
  # The protected prefix: answered locally, whatever the spelling that routes here.
  - name: admin
    match: { path_prefix: /admin }
    upstream: be
    filters:
      - respond: { status: 403, body: "forbidden\n" }
  # A filter-added identity header that a client must not be able to remove or forge.
  - name: user
    match: { path_prefix: /user }
    upstream: be
    filters:
      - headers: { request: { set: { X-User-Id: "42" } } }
  # Routed by host: shows which host the gateway routes an absolute-form request on.
  - name: other-host
    match: { host: other.test, path_prefix: /hostcheck }
    upstream: be
    filters:
      - respond: { status: 202 }
  # A method deny: no spelling of DELETE may pass it.
  - name: no-delete
    match: { path_prefix: /items, methods: [DELETE] }
    upstream: be
    filters:
      - respond: { status: 405 }
  # Opted out of normalisation: routed on the raw path and forwarded as received.
  - name: raw
    match: { path_prefix: /raw/ }
    upstream: be
    normalize_path: false
  - name: all
    match: { path_prefix: / }
    upstream: be
`

// methodsConfig has no catch-all route, so a method no route accepts is not routed elsewhere.
const methodsConfig = `
server:
  listen: "127.0.0.1:0"
  admin: ""
  drain_timeout: 2s
  read_timeout: 2s
access_log: { enabled: false }
upstreams:
  be: { targets: [%q], timeout: 2s, idle_timeout: 5s }
routes:
  - name: items
    match: { path_prefix: /items, methods: [GET, POST] }
    upstream: be
  - name: item-delete
    match: { path_prefix: /items/, methods: [DELETE] }
    upstream: be
  - name: traced
    match: { path_prefix: /traced }
    upstream: be
    allow_trace: true
  - name: canary
    match: { path: /canary }
    upstream: be
`

// startHostile runs a gateway with the hostile config in front of a recorder.
func startHostile(t *testing.T) (*recorder, string) {
	t.Helper()
	return startHostileConfig(t, hostileConfig)
}

// startHostileConfig runs a gateway with config (a format with the backend's address as its
// one argument) in front of a recorder.
func startHostileConfig(t *testing.T, config string) (*recorder, string) {
	t.Helper()
	rec := startRecorder(t)
	cfg, err := parseConfig("hostile.yaml", []byte(fmt.Sprintf(config, rec.ln.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewFromConfig(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return rec, serve(t, e)
}

// exchange is what the client saw: the status (0: the gateway answered nothing) and whether
// the gateway closed the connection after answering.
type exchange struct {
	status int
	body   string
	allow  string // the Allow field
	proto  string // the version of the status line
	te     string // the Transfer-Encoding field
	closed bool
}

// send writes raw on conn and reads one response. It reports the connection closed when the
// gateway said so or when the next read ends the stream.
func send(t *testing.T, conn net.Conn, br *bufio.Reader, raw string) exchange {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		// The gateway may close before reading everything; what it answered is still readable.
		t.Logf("write: %v", err)
	}
	var resp fasthttp.Response
	resp.SkipBody = strings.HasPrefix(raw, "HEAD ") // an answer to HEAD has no body
	if err := resp.Read(br); err != nil {
		return exchange{closed: true}
	}
	ex := exchange{status: resp.StatusCode(), body: string(resp.Body()), allow: string(resp.Header.Peek("Allow")),
		proto: string(resp.Header.Protocol()), te: string(resp.Header.Peek("Transfer-Encoding")), closed: resp.ConnectionClose()}
	if ex.closed {
		// The gateway must also act on what it said: the next read sees the end of the stream.
		if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := br.ReadByte(); err == nil {
			t.Errorf("connection announced closed, but more bytes followed")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("connection announced closed, but still open after 2s")
		}
	}
	return ex
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

const canary = "GET /canary?q=1 HTTP/1.1\r\nHost: canary.test\r\nUser-Agent: canary\r\n\r\n"

// wantCanary is exactly what the backend must receive for the canary: the gateway adds the
// X-Forwarded-* fields and Via, and changes nothing else (fasthttp writes User-Agent first;
// the order of distinct fields carries no meaning).
const wantCanary = "GET /canary?q=1 HTTP/1.1\r\nUser-Agent: canary\r\nHost: canary.test\r\n" +
	"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: canary.test\r\nVia: 1.1 weir\r\n\r\n"

func chunked(body string) string {
	return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
}

// hostileCase is one hostile exchange. golden names the file holding the exact bytes the
// backend must receive; "" means it must receive nothing. Every case must be answered at once,
// well before server.read_timeout (2s) could end a wait.
type hostileCase struct {
	name       string
	req        string
	wantStatus int    // 0: the gateway answers nothing and closes
	wantClose  bool   // the gateway closes the connection after answering
	wantAllow  string // the Allow field of the answer
	wantBody   string // the body of the answer, when not ""
	golden     string
	// answer replaces the backend's normal answer for this case; closeAfter makes the backend
	// close the connection after it.
	answer     string
	late       string // sent 50ms after answer on the same connection
	closeAfter bool
	// incomplete marks a rejection found only while the body streams: the head and part of the
	// body may already be upstream, but never a whole request, and the gateway closes that
	// upstream connection, so what the backend holds is an incomplete message it discards.
	incomplete bool
	// resent allows the golden request to arrive more than once: a GET that got a broken
	// response is idempotent, so the upstream's retry policy may send it again.
	resent bool
}

func hostileCases() []hostileCase {
	const host = "Host: app.test\r\n"
	big := strings.Repeat("a", 5000)
	return []hostileCase{
		// Accepted requests: the baseline every rejection is measured against.
		{name: "plain get", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "plain_get"},
		{name: "content-length post", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello", wantStatus: 200, golden: "cl_post"},
		{name: "chunked post", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + chunked("hello"), wantStatus: 200, golden: "chunked_post"},
		{name: "chunked post with extension", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n", wantStatus: 200, golden: "chunk_ext"},

		// CL.TE, TE.CL: both framings on one message.
		{name: "CL.TE", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", wantStatus: 400, wantClose: true},
		{name: "TE.CL", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		// TE.TE: a Transfer-Encoding one parser reads as chunked and another does not.
		{name: "TE.TE xchunked", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE two fields", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE list", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE space before colon", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE tab value", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE trailing space", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE vertical tab", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "TE.TE quoted", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},

		// Content-Length forms.
		{name: "duplicate CL same", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "duplicate CL differing", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL list", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL plus sign", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL minus sign", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL inner space", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 1 0\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL trailing space", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 5 \r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL space before colon", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length : 5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL hex", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 0x5\r\n\r\nhello", wantStatus: 400, wantClose: true},
		{name: "CL overflow", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\nhello", wantStatus: 400, wantClose: true},

		// Chunked body abuse. The head is valid, so these are caught while the body streams.
		{name: "chunk size overflow", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "chunk size garbage", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "chunk size negative", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "chunk size 0x prefix", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "chunk data longer than size", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true, incomplete: true},
		{name: "chunk extension with bare LF", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		// Extensions are bounded as Go's net/http bounds them (edge.MaxChunkLine, MaxChunkExt):
		// fasthttp skips them without a limit, so only the timeouts would end a long one.
		{name: "chunk extension oversized", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", 70000) + "\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "chunk line over 4096", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", 4095) + "\r\nhello\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "chunk extensions summed over 4096", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1;"+strings.Repeat("x", 999)+"\r\nh\r\n", 5) + "0\r\n\r\n", wantStatus: 400, wantClose: true},
		// The body is re-framed on the way out: extensions under the bounds are not forwarded.
		{name: "chunk line at 4096", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", 4094) + "\r\nhello\r\n0\r\n\r\n", wantStatus: 200, golden: "chunk_ext"},

		// Line endings and folding.
		// A head whose lines end in bare LFs: fasthttp waits for a CRLFCRLF that never comes;
		// the listener's guard (edge.GuardPlain) fails the read at the first bare LF, so it
		// is refused at once, like a bare LF anywhere else in a head.
		{name: "bare LF in head", req: "GET /x HTTP/1.1\n" + "Host: app.test\nX-A: 1\n\n", wantStatus: 400, wantClose: true},
		{name: "bare LF in request line only", req: "GET /x HTTP/1.1\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "bare LF blank line", req: "GET /x HTTP/1.1\r\n" + host + "\n", wantStatus: 400, wantClose: true},
		{name: "bare LF after field", req: "GET /x HTTP/1.1\r\n" + host + "X-A: 1\nX-B: 2\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "bare CR in value", req: "GET /x HTTP/1.1\r\n" + host + "X-A: 1\rX-B: 2\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "obs-fold", req: "GET /x HTTP/1.1\r\n" + host + "X-A: 1\r\n 2\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "obs-fold of TE", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "NUL in value", req: "GET /x HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n", wantStatus: 400, wantClose: true},

		// Not HTTP at all: a TLS ClientHello (and an SSLv2 one) on the plain listener has no line
		// end for fasthttp to wait for; it is answered at once instead of at the read timeout.
		{name: "TLS ClientHello on plain listener", req: tlsClientHello, wantStatus: 400, wantClose: true},
		{name: "SSLv2 hello on plain listener", req: "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + strings.Repeat("\x00", 37), wantStatus: 400, wantClose: true},

		// Versions the gateway does not speak: fasthttp would serve any "HTTP/d.d" as HTTP/1.0.
		{name: "HTTP/9.9", req: "GET /x HTTP/9.9\r\n" + host + "\r\n", wantStatus: 505, wantClose: true},
		{name: "HTTP/1.2", req: "GET /x HTTP/1.2\r\n" + host + "\r\n", wantStatus: 505, wantClose: true},
		{name: "HTTP/2.0 in HTTP/1 syntax", req: "GET /x HTTP/2.0\r\n" + host + "\r\n", wantStatus: 505, wantClose: true},
		{name: "HTTP/0.9", req: "GET /x HTTP/0.9\r\n" + host + "\r\n", wantStatus: 505, wantClose: true},
		{name: "HTTP/1.0 accepted", req: "GET /x HTTP/1.0\r\n" + host + "\r\n", wantStatus: 200, wantClose: true, golden: "http10_get"},

		// TRACE echoes the request, credentials included: refused unless a route allows it.
		{name: "TRACE refused", req: "TRACE /x HTTP/1.1\r\n" + host + "Cookie: s=1\r\n\r\n", wantStatus: 405,
			wantAllow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},

		// HTTP/1.0 knows no chunked coding.
		{name: "HTTP/1.0 with TE", req: "POST /x HTTP/1.0\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", wantStatus: 400, wantClose: true},

		// Field names.
		{name: "space in field name", req: "GET /x HTTP/1.1\r\n" + host + "X A: 1\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "non-token byte in name", req: "GET /x HTTP/1.1\r\n" + host + "X(A): 1\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "non-ASCII in name", req: "GET /x HTTP/1.1\r\n" + host + "X-\xc3\xa9: 1\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "empty field name", req: "GET /x HTTP/1.1\r\n" + host + ": 1\r\n\r\n", wantStatus: 400, wantClose: true},

		// Sizes (max_header_bytes 4096, max_body_bytes 8 KiB in this config).
		{name: "oversized request line", req: "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\n" + host + "\r\n", wantStatus: 431, wantClose: true},
		{name: "oversized header", req: "GET /x HTTP/1.1\r\n" + host + "X-Big: " + big + "\r\n\r\n", wantStatus: 431, wantClose: true},
		{name: "oversized declared body", req: "POST /x HTTP/1.1\r\n" + host + "Content-Length: 9000\r\n\r\n" + strings.Repeat("b", 9000), wantStatus: 413, wantClose: true},
		{name: "oversized chunked body", req: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + chunked(strings.Repeat("b", 9000)), wantStatus: 413, wantClose: true, incomplete: true},

		// Absolute form: RFC 9112 section 3.2.2 says the URI's authority wins over Host. The
		// gateway routes on it, and the backend receives it as Host, so the two agree.
		{name: "absolute-form vs Host", req: "GET http://other.test/x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "absolute_form"},
		{name: "absolute-form routes on its host", req: "GET http://other.test/hostcheck HTTP/1.1\r\n" + host + "\r\n", wantStatus: 202},
		{name: "absolute-form overrides Host for routing", req: "GET http://app.test/hostcheck HTTP/1.1\r\nHost: other.test\r\n\r\n", wantStatus: 200, golden: "absolute_form_hostcheck"},
		{name: "absolute-form to admin", req: "GET http://app.test/admin HTTP/1.1\r\nHost: app.test\r\n\r\n", wantStatus: 403},

		// A protected prefix: every spelling that means /admin is routed to /admin and denied.
		{name: "admin", req: "GET /admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "double slash admin", req: "GET //admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "encoded admin", req: "GET /%61dmin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "dot segment admin", req: "GET /./admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "dot-dot into admin", req: "GET /x/../admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "encoded dot-dot into admin", req: "GET /x/%2e%2e/admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		// An encoded slash means "/" to some upstreams and not to others: refused.
		{name: "encoded slash into admin", req: "GET /x/..%2fadmin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "admin semicolon dot-dot", req: "GET /admin/..;/ HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		// Not a dot segment to the gateway (nor to RFC 3986), so this is /x/..;/admin on the
		// catch-all route, sent as written. Servlet containers that strip ";" parameters before
		// resolving dot segments read it as /admin: protect such backends with a path_regex
		// route that denies ";" in paths, or on the backend itself.
		{name: "semicolon dot-dot past prefix", req: "GET /x/..;/admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "semicolon_dotdot"},
		// Paths are case-sensitive (RFC 3986): /ADMIN is another resource and goes to the
		// catch-all route, sent exactly as written. A backend that folds case must not rely on
		// a case-sensitive prefix; filters/respond's README says how to match every case.
		{name: "uppercase admin", req: "GET /ADMIN HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "uppercase_admin"},

		// Path normalisation: the path routed on is the path forwarded. Dot segments are
		// resolved, unreserved escapes decoded and slashes merged before routing, so every way
		// out of /admin reaches the backend as the path it was routed as, never with the dots.
		{name: "dot-dot out of admin", req: "GET /admin/../public HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "norm_public"},
		{name: "encoded dot-dot out of admin", req: "GET /admin/%2e%2e/public HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "norm_public"},
		{name: "mixed dot-dot out of admin", req: "GET /admin/.%2E/./public HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "norm_public"},
		{name: "merged slashes and escapes", req: "GET //x//%79/../z%3fq?a=../b&c=%2F HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "norm_query"},
		{name: "raw UTF-8 path escaped", req: "GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "norm_utf8"},
		{name: "admin trailing slash", req: "GET /admin/ HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "admin dot-dot back in", req: "GET /admin/x/../ HTTP/1.1\r\n" + host + "\r\n", wantStatus: 403},
		{name: "absolute-form dot-dot out of admin", req: "GET http://app.test/admin/../public HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "norm_public"},
		{name: "absolute-form into admin", req: "GET http://app.test/x/%2e%2e/admin HTTP/1.1\r\nHost: other.test\r\n\r\n", wantStatus: 403},
		// What cannot be normalised without changing its meaning for some upstream: 400.
		{name: "encoded slash after admin", req: "GET /admin%2f.. HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "dot-dot encoded slash", req: "GET /admin/..%2f HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "encoded backslash", req: "GET /%5cadmin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "backslash", req: "GET /x\\..\\admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "backslash target", req: "GET \\admin HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "encoded NUL", req: "GET /admin%00/x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "encoded CRLF", req: "GET /x%0d%0aX-A:%201 HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "malformed escape", req: "GET /x%zz HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "fragment", req: "GET /x#frag HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "asterisk-form", req: "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "other scheme", req: "GET ftp://app.test/x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		// A route that opted out sees the raw path, and the backend receives it unchanged.
		{name: "raw route keeps encoded slash", req: "GET /raw/a%2fb/../c HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "raw_route"},
		// A raw route is matched on the raw path only: normalising into it does not reach it.
		{name: "raw route not reached by dot-dot", req: "GET /x/../raw/a HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "raw_not_reached"},

		// Methods are case-sensitive tokens; one the deny route does not match exactly would
		// pass it and be upper-cased by an upstream, so every other spelling is refused.
		{name: "DELETE denied", req: "DELETE /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405},
		{name: "lower-case delete", req: "delete /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "mixed-case delete", req: "DeLeTe /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "method trailing space", req: "DELETE  /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "method with tab", req: "DELETE\t/items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},

		// Host: userinfo would become an Authorization header on the way upstream; refused.
		{name: "host with userinfo", req: "GET /x HTTP/1.1\r\nHost: admin:admin@app.test\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "absolute-form with userinfo", req: "GET http://admin:admin@app.test/x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 400, wantClose: true},
		{name: "host with two ports", req: "GET /x HTTP/1.1\r\nHost: app.test:80:81\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "host with empty port", req: "GET /x HTTP/1.1\r\nHost: app.test:\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "host with port out of range", req: "GET /x HTTP/1.1\r\nHost: app.test:65536\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "host with empty label", req: "GET /x HTTP/1.1\r\nHost: app..test\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "host with two trailing dots", req: "GET /x HTTP/1.1\r\nHost: app.test..\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "host with slash", req: "GET /x HTTP/1.1\r\nHost: app.test/x\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "host with percent", req: "GET /x HTTP/1.1\r\nHost: app%2etest\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "two host fields", req: "GET /x HTTP/1.1\r\n" + host + "Host: other.test\r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "empty host", req: "GET /x HTTP/1.1\r\nHost: \r\n\r\n", wantStatus: 400, wantClose: true},
		{name: "HTTP/1.0 without host", req: "GET /x HTTP/1.0\r\n\r\n", wantStatus: 400, wantClose: true},
		// One trailing dot names the same host, for routing too.
		{name: "host trailing dot routes", req: "GET /hostcheck HTTP/1.1\r\nHost: other.test.\r\n\r\n", wantStatus: 202},
		{name: "host trailing dot", req: "GET /x HTTP/1.1\r\nHost: app.test.\r\n\r\n", wantStatus: 200, golden: "host_trailing_dot"},
		{name: "host IPv6 literal with port", req: "GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", wantStatus: 200, golden: "host_ipv6"},

		// Client-identity fields from an untrusted peer are removed.
		{name: "identity headers stripped", req: "GET /x HTTP/1.1\r\n" + host + "X-Real-IP: 10.0.0.1\r\nTrue-Client-IP: 10.0.0.1\r\nCF-Connecting-IP: 10.0.0.1\r\n" +
			"X-Client-IP: 10.0.0.1\r\nX-Original-URL: /admin\r\nx-rewrite-url: /admin\r\nX-Forwarded-Prefix: /admin\r\n\r\n", wantStatus: 200, golden: "plain_get"},

		// Hop-by-hop abuse: Connection may name fields, but it is applied before any filter,
		// so it cannot strip a header a filter sets, and the client's own copy is replaced.
		{name: "connection strips filter header", req: "GET /user HTTP/1.1\r\n" + host + "Connection: X-User-Id\r\nX-User-Id: 1\r\n\r\n", wantStatus: 200, golden: "connection_x_user_id"},
		{name: "connection strips host", req: "GET /x HTTP/1.1\r\n" + host + "Connection: Host, X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", wantStatus: 200, golden: "connection_host"},

		// Bad responses from the backend: the client gets a clean 502, never the bytes.
		{name: "backend invalid status line", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 502, golden: "plain_get", resent: true,
			answer: "HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", closeAfter: true},
		{name: "backend garbage", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 502, golden: "plain_get", resent: true,
			answer: "hello\r\n\r\n", closeAfter: true},
		{name: "backend CL longer than body", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 502, golden: "plain_get", resent: true,
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", closeAfter: true},
		{name: "backend CL shorter than body", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "plain_get",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"},
		// The same, with the extra bytes arriving after the response was read: they sit in a
		// pooled upstream connection and must not become the next request's response.
		{name: "backend unsolicited bytes after response", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "plain_get",
			answer: backendOK, late: "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"},
		{name: "backend CL and TE", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 502, golden: "plain_get", resent: true,
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", closeAfter: true},
		{name: "backend duplicate CL", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 502, golden: "plain_get", resent: true,
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", closeAfter: true},
		{name: "backend obs-fold", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 502, golden: "plain_get", resent: true,
			answer: "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok", closeAfter: true},
		// An HTTP/1.0 upstream: the client gets the gateway's version and keeps its connection.
		{name: "backend HTTP/1.0", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, wantBody: "ok", golden: "plain_get",
			answer: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok", closeAfter: true},
		{name: "backend HTTP/1.0 keep-alive", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, wantBody: "ok", golden: "plain_get",
			answer: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"},
		{name: "backend HTTP/1.0 body to close", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, wantBody: "ok", golden: "plain_get",
			answer: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok", closeAfter: true},
		// An HTTP/1.0 client knows no chunked coding (RFC 9112 section 6.1): a body of unknown
		// length reaches it delimited by the close of its connection.
		{name: "HTTP/1.0 client, chunked upstream body", req: "GET /x HTTP/1.0\r\n" + host + "\r\n", wantStatus: 200, wantClose: true, wantBody: "ok", golden: "http10_get",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
		{name: "HTTP/1.0 client, close-delimited upstream body", req: "GET /x HTTP/1.0\r\n" + host + "\r\n", wantStatus: 200, wantClose: true, wantBody: "ok", golden: "http10_get",
			answer: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok", closeAfter: true},
		// A body of unknown length streams: the status line has gone out when the bad chunk is
		// read, so the gateway can only cut the response short by closing the connection.
		{name: "backend bad chunk size", req: "GET /x HTTP/1.1\r\n" + host + "\r\n", wantStatus: 0, wantClose: true, golden: "plain_get",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", closeAfter: true},
	}
}

// tlsClientHello is the start of a TLS 1.3 ClientHello record, as a browser sends it to an
// https:// URL: a handshake record (0x16), version, length, then the hello itself.
var tlsClientHello = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + strings.Repeat("\x00", 32) +
	"\x00\x00\x02\x13\x01\x01\x00\x00\x76\x00\x00\x00\x0e\x00\x0c\x00\x00\x09app.test"

func TestHostile(t *testing.T) {
	rec, addr := startHostile(t)
	runHostile(t, rec, addr, hostileCases())
}

// TestHostileMethods: a method no route accepts is answered 405 with the methods that some
// route would accept, TRACE only where a route allows it.
func TestHostileMethods(t *testing.T) {
	rec, addr := startHostileConfig(t, methodsConfig)
	const host = "Host: app.test\r\n"
	runHostile(t, rec, addr, []hostileCase{
		{name: "allowed method", req: "GET /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "methods_get_items"},
		{name: "other method", req: "PUT /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405, wantAllow: "GET, POST"},
		{name: "two routes allow", req: "PUT /items/1 HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405, wantAllow: "GET, POST, DELETE"},
		{name: "HEAD is not GET", req: "HEAD /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405, wantAllow: "GET, POST"},
		{name: "unknown method", req: "PURGE /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405, wantAllow: "GET, POST"},
		{name: "no route for any method", req: "GET /nowhere HTTP/1.1\r\n" + host + "\r\n", wantStatus: 404},
		{name: "TRACE refused", req: "TRACE /items HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405, wantAllow: "GET, POST"},
		{name: "TRACE refused on a route of any method", req: "TRACE /canary HTTP/1.1\r\n" + host + "\r\n", wantStatus: 405,
			wantAllow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
		{name: "TRACE allowed by the route", req: "TRACE /traced HTTP/1.1\r\n" + host + "\r\n", wantStatus: 200, golden: "methods_trace"},
		{name: "a route allowing TRACE takes other methods", req: "DELETE /traced/x?y HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n", wantStatus: 200, golden: "methods_delete_traced"},
	})
}

func runHostile(t *testing.T, rec *recorder, addr string, cases []hostileCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			if tc.answer != "" {
				rec.setAnswer(tc.answer, tc.late, tc.closeAfter)
			}
			conn, br := dial(t, addr)
			start := time.Now()
			got := send(t, conn, br, tc.req)
			if d := time.Since(start); d > time.Second {
				t.Errorf("answered after %v, want at once (read_timeout is 2s)", d.Round(time.Millisecond))
			}
			rec.setAnswer(backendOK, "", false)
			if tc.late != "" {
				time.Sleep(100 * time.Millisecond) // the late bytes are in the pooled connection
			}
			if got.status != tc.wantStatus {
				t.Errorf("status: got %d, want %d (body %q)", got.status, tc.wantStatus, got.body)
			}
			// The gateway answers in its own version, whatever the client or the upstream spoke.
			if got.status != 0 && got.proto != "HTTP/1.1" {
				t.Errorf("status line version: got %q, want HTTP/1.1", got.proto)
			}
			if strings.Contains(strings.SplitN(tc.req, "\r\n", 2)[0], "HTTP/1.0") && got.te != "" {
				t.Errorf("an HTTP/1.0 client got Transfer-Encoding: %s", got.te)
			}
			if tc.wantBody != "" && got.body != tc.wantBody {
				t.Errorf("body: got %q, want %q", got.body, tc.wantBody)
			}
			if got.allow != tc.wantAllow {
				t.Errorf("Allow: got %q, want %q", got.allow, tc.wantAllow)
			}
			if got.closed != tc.wantClose {
				t.Errorf("connection closed: got %v, want %v", got.closed, tc.wantClose)
			}
			if strings.Contains(got.body, "smuggled") {
				t.Errorf("client received the backend's extra bytes: %q", got.body)
			}
			checkReceived(t, rec, tc.golden, tc.incomplete, tc.resent)

			// The canary, on the same connection when it stayed open, then on a fresh one.
			if !got.closed {
				canaryPasses(t, rec, conn, br, "same connection")
			}
			c2, br2 := dial(t, addr)
			canaryPasses(t, rec, c2, br2, "fresh connection")
		})
	}
}

// checkReceived compares what the backend received with the golden file (none when golden is
// empty). Bytes can reach the backend after the client's answer (a body the gateway gave up
// on), so a rejected case waits briefly for stragglers, and an incomplete one for the end of
// the aborted upstream connection.
func checkReceived(t *testing.T, rec *recorder, golden string, incomplete, resent bool) {
	t.Helper()
	entries := rec.take()
	if golden == "" {
		wait := 20 * time.Millisecond
		if incomplete {
			wait = 2 * time.Second
		}
		for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			entries = append(entries, rec.take()...)
			if incomplete && len(entries) > 0 {
				break
			}
		}
		for _, e := range entries {
			if !incomplete || !strings.HasPrefix(e, "[incomplete") {
				t.Errorf("backend received %d request(s) for a rejected case, want none:\n%q", len(entries), clipAll(entries))
				break
			}
		}
		return
	}
	path := filepath.Join("testdata", "hostile", golden+".golden")
	if resent {
		for len(entries) > 1 && entries[len(entries)-1] == entries[0] {
			entries = entries[:len(entries)-1]
		}
	}
	got := strings.Join(entries, "")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (go test -run Hostile -update writes it): %v", err)
	}
	// Routing and the upstream must agree on the host: the Host sent is X-Forwarded-Host.
	if h, xfh := field(got, "Host"), field(got, "X-Forwarded-Host"); h != xfh {
		t.Errorf("backend received Host %q but X-Forwarded-Host %q", h, xfh)
	}
	if len(entries) != 1 || got != string(want) {
		t.Errorf("backend received %d request(s):\n%q\nwant exactly:\n%q", len(entries), clip(got), clip(string(want)))
	}
}

func canaryPasses(t *testing.T, rec *recorder, conn net.Conn, br *bufio.Reader, where string) {
	t.Helper()
	got := send(t, conn, br, canary)
	if got.status != 200 || got.body != "ok" || got.closed {
		t.Errorf("canary on %s: got %d %q closed=%v, want 200 \"ok\" open", where, got.status, got.body, got.closed)
	}
	entries := rec.take()
	if len(entries) != 1 || entries[0] != wantCanary {
		t.Errorf("canary on %s: backend received:\n%q\nwant exactly:\n%q", where, clipAll(entries), wantCanary)
	}
}

// field returns the value of the first header line named name in a raw request.
func field(raw, name string) string {
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// clip keeps failure messages readable when a case sends kilobytes.
func clip(s string) string {
	const max = 400
	if len(s) > max {
		return s[:max] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

func clipAll(entries []string) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = clip(e)
	}
	return out
}
