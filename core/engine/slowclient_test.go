package engine

import (
	"bytes"
	"fmt"
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
