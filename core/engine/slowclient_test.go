package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestSlowClientsDoNotStarveOthers holds many connections open that trickle a request header a
// byte at a time (slowloris) and checks that normal clients are served meanwhile and that the
// server cuts the slow ones at read_timeout.
func TestSlowClientsDoNotStarveOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("holds connections for a few seconds")
	}
	be := backend(t)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	cfg := fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", read_timeout: 1s, max_conns_per_ip: 0 }
access_log: { enabled: false }
upstreams: { be: { targets: [%q] } }
routes: [ { name: all, match: { path_prefix: / }, upstream: be } ]
`, be)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, path)

	const slow = 200
	var wg sync.WaitGroup
	closedAfter := make(chan time.Duration, slow)
	for i := 0; i < slow; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow conn %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			began := time.Now()
			msg := append([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "), bytes.Repeat([]byte("a"), 100)...)
			for j := 0; ; j = (j + 1) % len(msg) {
				if _, err := conn.Write(msg[j : j+1]); err != nil {
					closedAfter <- time.Since(began)
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := conn.Read(make([]byte, 1)); err != nil {
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						closedAfter <- time.Since(began) // the server closed it
						return
					}
				}
				if time.Since(began) > 10*time.Second {
					closedAfter <- -1
					return
				}
			}
		}()
	}

	c := &fasthttp.Client{}
	for i := 0; i < 200; i++ {
		status, body, _, err := get(c, "http://"+addr+"/fast")
		if err != nil || status != 200 || body != "/fast" {
			t.Fatalf("normal request %d during slowloris: %d %q %v", i, status, body, err)
		}
	}
	wg.Wait()
	close(closedAfter)
	var worst time.Duration
	for d := range closedAfter {
		if d < 0 {
			t.Fatal("a slow connection was still open after 10s; read_timeout is 1s")
		}
		worst = max(worst, d)
	}
	t.Logf("200 normal requests served during %d slow connections; slowest cut after %v (read_timeout 1s)", slow, worst)
}

// TestSlowReaderCutAtWriteTimeout: a client that asks for a large answer and never reads it
// holds the response write until server.write_timeout, which the coarse deadlines of a served
// connection enforce (edge.Park); the connection is then closed with most of the body unsent,
// and another client is served meanwhile.
func TestSlowReaderCutAtWriteTimeout(t *testing.T) {
	const size = 64 << 20 // far more than the loopback socket buffers hold
	big := bytes.Repeat([]byte("x"), 1<<20)
	be := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		if string(rc.Path()) != "/big" {
			rc.SetBodyString("ok")
			return
		}
		rc.SetBodyStreamWriter(func(w *bufio.Writer) {
			for range size / len(big) {
				if _, err := w.Write(big); err != nil || w.Flush() != nil {
					return
				}
			}
		})
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go be.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = be.Shutdown() })

	path := filepath.Join(t.TempDir(), "weir.yaml")
	writeFile(t, path, fmt.Sprintf(`
server: { listen: "127.0.0.1:0", admin: "", write_timeout: 300ms }
access_log: { enabled: false }
upstreams: { be: { targets: [%q], timeout: 10s } }
routes: [ { name: all, match: { path_prefix: / }, upstream: be } ]
`, ln.Addr()))
	_, addr := start(t, path)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// Read nothing well past the write timeout; another client is served meanwhile.
	time.Sleep(time.Second)
	var other fasthttp.Response
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + "/")
	if err := fasthttp.DoTimeout(req, &other, 5*time.Second); err != nil || other.StatusCode() != 200 {
		t.Errorf("another client: %v, status %d", err, other.StatusCode())
	}
	// Now read: what the socket buffers held arrives, then the close.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after the write timeout (%d bytes read)", n)
	}
	if n >= size {
		t.Fatalf("read %d bytes: the whole answer was sent to a client that did not read it", n)
	}
}
