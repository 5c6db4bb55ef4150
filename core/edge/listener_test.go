package edge

import (
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
		})
	}
}
