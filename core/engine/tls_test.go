package engine

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/config"
)

// selfSigned writes a self-signed certificate for names and returns its files and pool.
func selfSigned(t testing.TB, dir, base string, names ...string) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: names,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return cf, kf, pool
}

// TestTLSListener serves the gateway over TLS with two certificates chosen by SNI, and refuses
// TLS 1.1.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	aCert, aKey, aPool := selfSigned(t, dir, "a", "a.example.com")
	bCert, bKey, bPool := selfSigned(t, dir, "b", "*.b.example.com")
	cfgText := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin: ""
  tls: { certificates: [ { cert_file: %q, key_file: %q }, { cert_file: %q, key_file: %q } ] }
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`, aCert, aKey, bCert, bKey)
	e := engineFromYAML(t, dir, cfgText, zerolog.Nop())
	addr := serveListeners(t, e)[0]
	tests := []struct {
		sni     string
		roots   *x509.CertPool
		version uint16
		ok      bool
	}{
		{"a.example.com", aPool, 0, true},
		{"x.b.example.com", bPool, 0, true},
		{"x.b.example.com", aPool, 0, false}, // b's certificate, not signed by a
		{"a.example.com", aPool, tls.VersionTLS11, false},
	}
	for _, tt := range tests {
		c := &tls.Config{ServerName: tt.sni, RootCAs: tt.roots, MinVersion: tls.VersionTLS10, MaxVersion: tt.version}
		conn, err := tls.Dial("tcp", addr, c)
		if (err == nil) != tt.ok {
			t.Errorf("SNI %s max version %x: handshake err %v, want ok %v", tt.sni, tt.version, err, tt.ok)
		}
		if err != nil {
			continue
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tt.sni)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(conn)); err != nil || resp.StatusCode() != 200 {
			t.Errorf("SNI %s: status %d err %v", tt.sni, resp.StatusCode(), err)
		}
		// The echo upstream shows what was forwarded: the gateway tells upstreams the client
		// spoke TLS.
		if !strings.Contains(string(resp.Body()), `["X-Forwarded-Proto","https"]`) {
			t.Errorf("SNI %s: forwarded headers %s, want X-Forwarded-Proto https", tt.sni, resp.Body())
		}
		_ = conn.Close()
	}
	cfg, err := LoadConfig(filepath.Join(dir, "weir.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.TLS = &config.ServerTLS{Certificates: []config.Certificate{{CertFile: aCert, KeyFile: bKey}}}
	if _, err := NewFromConfig(cfg, zerolog.Nop()); err == nil {
		t.Error("mismatched certificate and key accepted")
	}
}

// TestStrictSNIHost sends requests whose Host differs from the SNI name they were sent on and
// checks which are refused with 421 in each server.tls.strict_sni_host mode: auto refuses a
// host that has a certificate of its own the connection's certificate does not cover, always
// refuses every uncovered host, never refuses none.
func TestStrictSNIHost(t *testing.T) {
	dir := t.TempDir()
	aCert, aKey, pool := selfSigned(t, dir, "a", "a.example.com")
	bCert, bKey, _ := selfSigned(t, dir, "b", "*.b.example.com")
	bPEM, err := os.ReadFile(bCert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(bPEM)
	for _, mode := range []string{"", "auto", "always", "never"} {
		path := filepath.Join(dir, "weir.yaml")
		cfgText := fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  admin: ""
  tls:
    certificates: [ { cert_file: %q, key_file: %q }, { cert_file: %q, key_file: %q } ]
    strict_sni_host: %q
access_log: { enabled: false }
upstreams: { demo: { kind: echo } }
routes: [ { name: r, upstream: demo } ]
`, aCert, aKey, bCert, bKey, mode)
		if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := New(path, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Listen(); err != nil {
			t.Fatal(err)
		}
		addr := strings.TrimPrefix(e.ListenerURLs()[0], "https://")
		done := make(chan error, 1)
		go func() { done <- e.ServeListeners() }()

		always, never := mode == "always", mode == "never"
		tests := []struct {
			sni, host string
			refused   bool
		}{
			{"a.example.com", "a.example.com", false},
			{"a.example.com", "A.Example.COM.:443", false}, // case, trailing dot and port
			{"x.b.example.com", "y.b.example.com", false},  // one wildcard certificate covers both
			{"a.example.com", "x.b.example.com", !never},   // b has a certificate of its own
			{"x.b.example.com", "a.example.com", !never},
			{"a.example.com", "other.test", always}, // no certificate of its own
			{"", "x.b.example.com", !never},         // no SNI: the first certificate (a's)
			{"", "a.example.com", false},
		}
		for _, tt := range tests {
			c := &tls.Config{ServerName: tt.sni, RootCAs: pool, InsecureSkipVerify: tt.sni == ""}
			conn, err := tls.Dial("tcp", addr, c)
			if err != nil {
				t.Fatalf("mode %q, SNI %q: %v", mode, tt.sni, err)
			}
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", tt.host)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var resp fasthttp.Response
			if err := resp.Read(bufio.NewReader(conn)); err != nil {
				t.Fatalf("mode %q, SNI %q, Host %q: %v", mode, tt.sni, tt.host, err)
			}
			want := 200
			if tt.refused {
				want = fasthttp.StatusMisdirectedRequest
			}
			if resp.StatusCode() != want {
				t.Errorf("mode %q, SNI %q, Host %q: status %d, want %d", mode, tt.sni, tt.host, resp.StatusCode(), want)
			}
			_ = conn.Close()
		}
		_ = e.Shutdown(t.Context())
		<-done
	}
}
