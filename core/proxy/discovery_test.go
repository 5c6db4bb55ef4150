package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/weir-gateway/weir/core/edge"
)

// fakeResolver answers from maps a test can change while the upstream runs.
type fakeResolver struct {
	mu  sync.Mutex
	ips map[string][]string
	srv map[string][]*net.SRV
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ips, ok := r.ips[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]net.IPAddr, len(ips))
	for i, s := range ips {
		out[i] = net.IPAddr{IP: net.ParseIP(s)}
	}
	return out, nil
}

func (r *fakeResolver) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs, ok := r.srv[name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return name, recs, nil
}

func (r *fakeResolver) set(host string, ips ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ips[host] = ips
}

func useResolver(t *testing.T) *fakeResolver {
	r := &fakeResolver{ips: map[string][]string{}, srv: map[string][]*net.SRV{}}
	old := resolver
	resolver = r
	t.Cleanup(func() { resolver = old })
	return r
}

// TestDNSDiscovery: a name target follows its A records without a reload, and a failed lookup
// keeps the previous addresses.
func TestDNSDiscovery(t *testing.T) {
	r := useResolver(t)
	a := newCtlBackend(t, "a")
	_, port, _ := net.SplitHostPort(a.addr)
	// A second backend on the same port of another loopback address, as a scaled-out service.
	ln, err := net.Listen("tcp", "127.0.0.2:"+port)
	if err != nil {
		t.Skipf("second loopback address unavailable: %v", err)
	}
	b := &ctlBackend{t: t, name: "b", addr: ln.Addr().String()}
	b.retryAfter.Store("")
	wake := make(chan struct{})
	b.wakeCh.Store(&wake)
	b.start(ln)
	t.Cleanup(b.kill)

	r.set("svc.test", "127.0.0.1")
	var dnsErrs []error
	var mu sync.Mutex
	u := newUpstream(t, Options{Targets: []string{"svc.test:" + port}, DNSRefresh: 20 * time.Millisecond,
		OnDNSError: func(_ string, err error) { mu.Lock(); dnsErrs = append(dnsErrs, err); mu.Unlock() }})
	if got := u.Targets(); len(got) != 1 || got[0] != a.addr {
		t.Fatalf("targets = %v, want [%s]", got, a.addr)
	}
	r.set("svc.test", "127.0.0.1", "127.0.0.2")
	waitFor(t, func() bool { return len(u.Targets()) == 2 })
	gw := viewGateway(t, u)
	hc := newClient(gw)
	for i := 0; i < 20; i++ {
		if st, _, err := get(hc, "", ""); err != nil || st != 200 {
			t.Fatalf("status %d err %v", st, err)
		}
	}
	if a.hits.Load() != 10 || b.hits.Load() != 10 {
		t.Errorf("hits a=%d b=%d, want 10 each", a.hits.Load(), b.hits.Load())
	}
	r.mu.Lock()
	delete(r.ips, "svc.test")
	r.mu.Unlock()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(dnsErrs) > 0 })
	if got := u.Targets(); len(got) != 2 {
		t.Errorf("after a failed lookup targets = %v, want the previous two", got)
	}
	r.set("svc.test", "127.0.0.2")
	waitFor(t, func() bool { return len(u.Targets()) == 1 && u.Targets()[0] == b.addr })
	if st := u.Pool().Status(); len(st) != 1 || st[0].Host != "svc.test" {
		t.Errorf("pool status = %+v, want one target from svc.test", st)
	}
}

// TestSRVDiscovery: SRV records give ports and weights.
func TestSRVDiscovery(t *testing.T) {
	r := useResolver(t)
	bs := backends(t, 2)
	var recs []*net.SRV
	for i, b := range bs {
		_, port, _ := net.SplitHostPort(b.addr)
		p, _ := strconv.Atoi(port)
		recs = append(recs, &net.SRV{Target: "node" + strconv.Itoa(i) + ".test.", Port: uint16(p), Weight: uint16(1 + 2*i)})
		r.set("node"+strconv.Itoa(i)+".test", "127.0.0.1")
	}
	r.srv["_http._tcp.api.test"] = recs
	u := newUpstream(t, Options{Targets: []string{"srv:_http._tcp.api.test"}})
	gw := viewGateway(t, u)
	hc := newClient(gw)
	for i := 0; i < 400; i++ {
		if st, _, err := get(hc, "", ""); err != nil || st != 200 {
			t.Fatalf("status %d err %v", st, err)
		}
	}
	if got0, got1 := bs[0].hits.Load(), bs[1].hits.Load(); got0 != 100 || got1 != 300 {
		t.Errorf("hits = %d, %d; want 100, 300 (SRV weights 1 and 3)", got0, got1)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testPKI is a CA with a server certificate for api.internal and 127.0.0.1, and a client
// certificate, written as PEM files.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	clientCert, clientKey     string
	caPool                    *x509.CertPool
	serverPair                tls.Certificate
}

func newPKI(t testing.TB) *testPKI { return newPKIFor(t, "api.internal") }

// newPKIFor is newPKI with the server certificate issued for names.
func newPKIFor(t testing.TB, names ...string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, dns []string) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: dns, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+".key", "EC PRIVATE KEY", kb)
	}
	p.certFile, p.keyFile = issue("server", 2, x509.ExtKeyUsageServerAuth, names)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
	p.serverPair, err = tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveTLS runs a backend that requires TLS (and, with mutual, a client certificate).
func serveTLS(t testing.TB, p *testPKI, mutual bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{p.serverPair}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = p.caPool
	}
	s := &fasthttp.Server{Logger: nopLogger{}, Handler: func(ctx *fasthttp.RequestCtx) {
		if ctx.IsTLS() {
			ctx.SetBodyString("tls")
		}
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = s.Shutdown(); <-done })
	return ln.Addr().String()
}

func TestUpstreamTLS(t *testing.T) {
	p := newPKI(t)
	plain := serveTLS(t, p, false)
	mutual := serveTLS(t, p, true)
	tests := []struct {
		name   string
		target string
		tls    TLSOptions
		want   int
	}{
		{"verified by ca and name", plain, TLSOptions{CAFile: p.caFile, ServerName: "api.internal"}, 200},
		{"verified by ip san", plain, TLSOptions{CAFile: p.caFile}, 200},
		{"wrong server name", plain, TLSOptions{CAFile: p.caFile, ServerName: "other.internal"}, 502},
		{"unknown ca", plain, TLSOptions{ServerName: "api.internal"}, 502},
		{"insecure", plain, TLSOptions{InsecureSkipVerify: true}, 200},
		{"mtls with client cert", mutual, TLSOptions{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}, 200},
		{"mtls without client cert", mutual, TLSOptions{CAFile: p.caFile}, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.tls
			u := newUpstream(t, Options{Targets: []string{tt.target}, TLS: &o})
			gw := viewGateway(t, u)
			resp := do(t, gw, nil)
			if resp.StatusCode() != tt.want {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode(), tt.want, resp.Body())
			}
			if tt.want == 200 && string(resp.Body()) != "tls" {
				t.Errorf("body %q, want the backend to have seen TLS", resp.Body())
			}
		})
	}
	if _, err := newStandalone(Options{Targets: []string{plain}, TLS: &TLSOptions{CAFile: filepath.Join(p.dir, "missing.pem")}}); err == nil {
		t.Error("missing ca_file accepted")
	}
	if _, err := newStandalone(Options{Targets: []string{plain}, TLS: &TLSOptions{CertFile: p.clientCert}}); err == nil {
		t.Error("cert_file without key_file accepted")
	}
}

// TestCertStoreSNI: certificates are chosen by SNI and replaced when their files change.
func TestCertStoreSNI(t *testing.T) {
	a, b := newPKIFor(t, "a.example.com"), newPKIFor(t, "*.b.example.com", "api.internal")
	c := newPKIFor(t, "api.internal")
	var reloadErrs []error
	store, err := edge.NewCertStore([]edge.CertPair{{CertFile: a.certFile, KeyFile: a.keyFile}, {CertFile: b.certFile, KeyFile: b.keyFile}, {CertFile: c.certFile, KeyFile: c.keyFile}}, nil,
		func(err error) { reloadErrs = append(reloadErrs, err) })
	if err != nil {
		t.Fatal(err)
	}
	pick := func(name string) []byte {
		got, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		return got.Certificate[0]
	}
	raw := func(p *testPKI) []byte { return p.serverPair.Certificate[0] }
	tests := []struct {
		sni  string
		want *testPKI
	}{
		{"a.example.com", a},
		{"A.Example.COM.", a},
		{"x.b.example.com", b},
		{"b.example.com", a}, // a wildcard covers one level below only; the first is the default
		{"y.x.b.example.com", a},
		{"api.internal", b}, // claimed twice: the earlier certificate wins
		{"", a},
	}
	for _, tt := range tests {
		if got := pick(tt.sni); !bytes.Equal(got, raw(tt.want)) {
			t.Errorf("SNI %q got the wrong certificate", tt.sni)
		}
	}
	if _, err := edge.NewCertStore([]edge.CertPair{{CertFile: a.certFile, KeyFile: filepath.Join(a.dir, "missing.key")}}, nil, nil); err == nil {
		t.Error("missing key accepted")
	}
	// Renew a's files with c's certificate: the store serves it after the next check.
	for _, f := range [][2]string{{c.certFile, a.certFile}, {c.keyFile, a.keyFile}} {
		data, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
		future := time.Now().Add(time.Minute)
		_ = os.Chtimes(f[1], future, future)
	}
	store.Recheck()
	if got := pick(""); !bytes.Equal(got, raw(c)) {
		t.Error("certificate not reloaded after its files changed")
	}
	// A broken file keeps the previous certificate and reports the error.
	if err := os.WriteFile(a.certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Minute)
	_ = os.Chtimes(a.certFile, later, later)
	store.Recheck()
	if got := pick(""); !bytes.Equal(got, raw(c)) {
		t.Error("a broken file replaced the serving certificate")
	}
	if len(reloadErrs) == 0 {
		t.Error("reload error not reported")
	}
	cfg := store.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
}
