package engine

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/acme/acmetest"
)

// TestACMEThroughEngine runs the gateway with server.tls.acme and no certificate file: the
// first Serve starts issuance, the CA's tls-alpn-01 validation is answered on the gateway's own
// TLS listener, and requests for the name are then served with the new certificate. A request
// under /.well-known/acme-challenge/ that matches no open challenge is routed like any other.
func TestACMEThroughEngine(t *testing.T) {
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc := acmetest.Start(t, plain.Addr().(*net.TCPAddr).Port, secure.Addr().(*net.TCPAddr).Port, 0)
	dir := t.TempDir()
	cfgText := fmt.Sprintf(`
server:
  listen: %q
  admin: ""
  tls:
    acme: { ca: %q, ca_root: %q, storage: %q, hosts: [app.weir.test], challenges: [tls-alpn-01], agree_tos: true }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`, secure.Addr().String(), tc.Dir, tc.Root, filepath.Join(dir, "acme"))
	e := engineFromYAML(t, dir, cfgText, zerolog.New(acmetest.Log(t)).Level(zerolog.WarnLevel))
	if got := e.tlsConfig(e.listeners[0]).NextProtos; !slices.Contains(got, "acme-tls/1") {
		t.Errorf("NextProtos = %v, want acme-tls/1 among them", got)
	}
	done := make(chan error, 2)
	go func() { done <- e.Serve(tls.NewListener(secure, e.tlsConfig(e.listeners[0]))) }()
	go func() { done <- e.Serve(plain) }()
	t.Cleanup(func() {
		_ = e.Shutdown(t.Context())
		<-done
		<-done
	})

	var conn *tls.Conn
	for deadline := time.Now().Add(15 * time.Second); ; {
		conn, err = tls.Dial("tcp", secure.Addr().String(), &tls.Config{ServerName: "app.weir.test", RootCAs: tc.Roots()})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for app.weir.test: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprint(conn, "GET /hello HTTP/1.1\r\nHost: app.weir.test\r\nConnection: close\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil || resp.StatusCode() != 200 {
		t.Errorf("GET over the ACME certificate: status %d, err %v", resp.StatusCode(), err)
	}
	_ = conn.Close()

	pc, err := net.Dial("tcp", plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fmt.Fprint(pc, "GET /.well-known/acme-challenge/guessed-token HTTP/1.1\r\nHost: app.weir.test\r\nConnection: close\r\n\r\n")
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp.Reset()
	if err := resp.Read(bufio.NewReader(pc)); err != nil || resp.StatusCode() != 200 ||
		!strings.Contains(string(resp.Body()), "guessed-token") {
		t.Errorf("guessed token: status %d, err %v, body %.200s; want the echo upstream's answer", resp.StatusCode(), err, resp.Body())
	}
}
