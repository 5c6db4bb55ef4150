package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
)

func TestGuardPlain(t *testing.T) {
	for _, tc := range []struct {
		name, first string
		want        error
	}{
		{"request", "GET / HTTP/1.1\r\n", nil},
		{"empty line first", "\r\nGET / HTTP/1.1\r\n", nil},
		{"tls client hello", "\x16\x03\x01\x00\xa5", ErrNotHTTP},
		{"sslv2 hello", "\x80\x2e\x01", ErrNotHTTP},
		{"space", " GET /", ErrNotHTTP},
		{"bare LF head", "GET / HTTP/1.1\nHost: a\n\n", ErrBareLF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			g := GuardPlain(ln)
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = io.WriteString(c, tc.first)
				_, _ = c.Read(make([]byte, 1)) // until the test closes its side
			}()
			c, err := g.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64)
			n, err := io.ReadAtLeast(c, buf, len(tc.first))
			if !errors.Is(err, tc.want) {
				t.Fatalf("read: got %v, want %v", err, tc.want)
			}
			if tc.want == nil && string(buf[:n]) != tc.first {
				t.Errorf("read %q, want %q", buf[:n], tc.first)
			}
			if tc.want == ErrBareLF && string(buf[:n]) != "GET / HTTP/1.1\n" {
				t.Errorf("read %q with the error, want the bytes through the bare LF", buf[:n])
			}
		})
	}
}

// TestGuardTLS: a connection that negotiated HTTP/1.1 (or nothing) over TLS is followed like
// a plain one, keeps its TLS state, and is handed to ConnState's caller unwrapped; one that
// negotiated h2 carries frames, and is not followed.
func TestGuardTLS(t *testing.T) {
	cert := testCert(t, "a.test")
	for _, tc := range []struct {
		proto string
		want  error
	}{
		{"", ErrBareLF},
		{"http/1.1", ErrBareLF},
		{"h2", nil},
	} {
		t.Run("alpn "+tc.proto, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			g := GuardTLS(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}))
			const first = "GET / HTTP/1.1\nHost: a\n\n"
			go func() {
				cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a test certificate
				if tc.proto != "" {
					cfg.NextProtos = []string{tc.proto}
				}
				c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = io.WriteString(c, first)
				_, _ = c.Read(make([]byte, 1)) // until the test closes its side
			}()
			c, err := g.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tc2, ok := c.(interface {
				Handshake() error
				ConnectionState() tls.ConnectionState
			})
			if !ok {
				t.Fatalf("%T hides the TLS state", c)
			}
			if err := tc2.Handshake(); err != nil {
				t.Fatal(err)
			}
			if got := tc2.ConnectionState().NegotiatedProtocol; got != tc.proto {
				t.Errorf("negotiated %q, want %q", got, tc.proto)
			}
			buf := make([]byte, 64)
			n, err := io.ReadAtLeast(c, buf, len(first))
			if !errors.Is(err, tc.want) {
				t.Fatalf("read %q: got %v, want %v", buf[:n], err, tc.want)
			}
			if g, ok := c.(*guardTLSConn); !ok || g.Conn == nil {
				t.Errorf("accepted %T, want the guard over the TLS connection", c)
			}
		})
	}
}
