package edge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// parkServer serves "conn N" (fasthttp's id of the connection) behind a Parker that parks
// after 20 ms idle, and returns the parker and its address.
func parkServer(t testing.TB, o ParkOptions, wrap func(net.Listener) net.Listener) (*Parker, *fasthttp.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	if o.After == 0 {
		o.After = 20 * time.Millisecond
	}
	p := Park(ln, o)
	srv := &fasthttp.Server{
		Handler: func(rc *fasthttp.RequestCtx) {
			fmt.Fprintf(rc, "tls=%v", rc.IsTLS())
		},
		IdleTimeout:       o.After,
		ReadTimeout:       5 * time.Second,
		StreamRequestBody: true,
		ConnState:         ParkConnState,
		CloseOnShutdown:   true,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(p) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return p, srv, ln.Addr().String()
}

// eachResolution runs f with the server's deadlines real (0) and coarse.
func eachResolution(t *testing.T, f func(t *testing.T, res time.Duration)) {
	for _, res := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(fmt.Sprintf("resolution %v", res), func(t *testing.T) { f(t, res) })
	}
}

// get sends one request on c and reads its answer.
func get(t testing.TB, c net.Conn, br *bufio.Reader) string {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// parkBetween sends n requests on c, checks each answer is want, waits after each until c is
// parked, and returns c's reader.
func parkBetween(t testing.TB, p *Parker, c net.Conn, n int, want string) *bufio.Reader {
	t.Helper()
	br := bufio.NewReader(c)
	for i := range n {
		if got := get(t, c, br); got != want {
			t.Fatalf("request %d: %q, want %q", i, got, want)
		}
		waitParked(t, p, 1)
	}
	return br
}

// waitParked polls until the parker holds n connections.
func waitParked(t testing.TB, p *Parker, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); p.Parked() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", p.Parked(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParkWakesOnNextRequest(t *testing.T) {
	eachResolution(t, func(t *testing.T, res time.Duration) {
		p, _, addr := parkServer(t, ParkOptions{Idle: 10 * time.Second, Resolution: res}, nil)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := parkBetween(t, p, c, 3, "tls=false")
		// Two pipelined requests, the second in the same write: nothing of it may be lost to
		// parking, and the connection is not parked between them.
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		waitParked(t, p, 1)
	})
}

func TestParkIdleTimeout(t *testing.T) {
	eachResolution(t, func(t *testing.T, res time.Duration) {
		p, _, addr := parkServer(t, ParkOptions{Idle: 200 * time.Millisecond, Resolution: res}, nil)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		get(t, c, br)
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read %d bytes, %v; want EOF when the idle timeout closes the connection", n, err)
		}
		if waited := time.Since(start); waited < 150*time.Millisecond {
			t.Fatalf("closed after %v, before the idle timeout", waited)
		}
		waitParked(t, p, 0)
	})
}

func TestParkShutdownClosesParked(t *testing.T) {
	p, srv, addr := parkServer(t, ParkOptions{Idle: time.Minute}, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get(t, c, br)
	waitParked(t, p, 1)
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("parked connection after shutdown: %v, want EOF", err)
	}
	waitParked(t, p, 0)
}

// A client cannot get around the connection limits by letting its connections park.
func TestParkLimitsCountParked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      ParkOptions
		status int
	}{
		{"per ip", ParkOptions{Idle: time.Minute, MaxConnsPerIP: 2}, 429},
		{"total", ParkOptions{Idle: time.Minute, MaxConns: 2}, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, addr := parkServer(t, tc.o, nil)
			for range 2 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				get(t, c, bufio.NewReader(c))
			}
			waitParked(t, p, 2)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("third connection: %d (close %v), want %d and close", resp.StatusCode, resp.Close, tc.status)
			}
		})
	}
}

func TestParkTLS(t *testing.T) {
	eachResolution(t, func(t *testing.T, res time.Duration) {
		cert := testCert(t, "localhost")
		wrap := func(ln net.Listener) net.Listener {
			return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		}
		p, _, addr := parkServer(t, ParkOptions{Idle: 10 * time.Second, Resolution: res}, wrap)
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test certificate
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// "tls=true" after a wake: the server sees the woken connection's TLS state.
		parkBetween(t, p, c, 2, "tls=true")
	})
}

// Many clients parking and waking at once, under -race.
func TestParkHammer(t *testing.T) {
	eachResolution(t, func(t *testing.T, res time.Duration) {
		_, _, addr := parkServer(t, ParkOptions{After: time.Millisecond, Idle: 10 * time.Second, Resolution: res}, nil)
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for i := range 20 {
					if got := get(t, c, br); got != "tls=false" {
						t.Errorf("client %d request %d: %q", w, i, got)
						return
					}
					time.Sleep(time.Duration(i%3) * time.Millisecond)
				}
			})
		}
		wg.Wait()
	})
}

// testCert is a self-signed certificate for name.
func testCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// BenchmarkParkWake is one request round trip on a keep-alive connection that was idle for a
// few milliseconds, in the server ("idle": it parks only after a minute) and parked ("parked":
// after 1 ms). The difference is what waking a parked connection costs; "busy" (no pause) is the
// round trip on a connection in use, for scale: a pause costs both sides their warm caches and
// threads, parked or not.
func BenchmarkParkWake(b *testing.B) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		pause bool
	}{
		{"busy", time.Minute, false},
		{"idle", time.Minute, true},
		{"parked", time.Millisecond, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, _, addr := parkServer(b, ParkOptions{After: tc.after, Idle: 2 * time.Minute}, nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			get(b, c, br) // only a connection that has served a request waits as idle
			b.ReportAllocs()
			for b.Loop() {
				if tc.pause {
					b.StopTimer()
					if tc.after < time.Minute {
						waitParked(b, p, 1)
					}
					time.Sleep(3 * time.Millisecond)
					b.StartTimer()
				}
				get(b, c, br)
			}
		})
	}
}
