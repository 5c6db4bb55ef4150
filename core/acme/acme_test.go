package acme

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
)

// testCA is pebble, Let's Encrypt's test CA, run in this process: its web front end on an
// httptest TLS server, its validation authority pointed at the test gateway's ports and at a
// DNS server that resolves every name to 127.0.0.1.
type testCA struct {
	dir    string // directory URL
	root   string // PEM file of the httptest server's certificate (ca_root)
	ca     *ca.CAImpl
	orders atomic.Int64 // newOrder requests
	ocsp   atomic.Int64 // OCSP requests answered
}

func startCA(t *testing.T, httpPort, tlsPort int, validity uint64) *testCA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // validate at once, not after up to 5 s
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no simulated bad nonces: retries would only slow the test
	t.Setenv("PEBBLE_AUTHZREUSE", "0")      // every order validates again, so each test sees its challenge
	tc := &testCA{}
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	// The OCSP responder is part of the test: pebble names it in every certificate, and it
	// answers "good", signed by pebble's intermediate.
	var ocspURL string
	ocspSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		issuer := tc.ca.GetIntermediateCert(0).Cert
		resp, err := ocsp.CreateResponse(issuer, issuer, ocsp.Response{
			Status: ocsp.Good, SerialNumber: req.SerialNumber,
			ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(10 * time.Minute), // within the certificate's hour
		}, tc.ca.GetIntermediateKey(0))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tc.ocsp.Add(1)
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(ocspSrv.Close)
	ocspURL = ocspSrv.URL

	store := db.NewMemoryStore()
	tc.ca = ca.New(logger, store, ocspURL, "rsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: validity},
	})
	vaImpl := va.New(logger, httpPort, tlsPort, false, startDNS(t), store)
	front := wfe.New(logger, store, vaImpl, tc.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/order-plz") {
			tc.orders.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tc.dir = srv.URL + wfe.DirectoryPath
	tc.root = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(tc.root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tc
}

// roots trusts the certificates pebble issues.
func (tc *testCA) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(tc.ca.GetRootCert(0).Cert)
	return p
}

// startDNS answers every A question with 127.0.0.1 and every other with nothing, over TCP
// (pebble's validation authority asks over TCP).
func startDNS(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// gateway is the TLS side of a listener as the engine builds it (an edge.CertStore with the
// Manager behind it) and a plain listener that answers http-01 validations, each a fasthttp
// server on 127.0.0.1.
type gateway struct {
	m        *Manager
	plain    net.Listener
	tls      net.Listener
	tlsAddr  string
	httpAddr string
}

// testLog writes to the test's log until it ends, then nowhere: certmagic's jobs (an order
// that a finished handshake started, a lock release) may log after Stop returns.
func testLog(t *testing.T) io.Writer {
	w := &afterTest{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type afterTest struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *afterTest) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// newListeners binds the gateway's ports first, so the CA can be told where to validate.
func newListeners(t *testing.T) *gateway {
	g := &gateway{plain: listen(t), tls: listen(t)}
	g.httpAddr, g.tlsAddr = g.plain.Addr().String(), g.tls.Addr().String()
	return g
}

func (g *gateway) start(t *testing.T, c *config.ACME, o Options) {
	t.Helper()
	o.HTTPPort, o.TLSPort = port(g.plain), port(g.tls)
	o.Log = zerolog.New(testLog(t)).Level(zerolog.WarnLevel)
	if testing.Verbose() {
		o.Log = o.Log.Level(zerolog.DebugLevel)
	}
	m, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	g.m = m
	store, err := edge.NewCertStore(nil, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	quiet := log.New(io.Discard, "", 0) // failed handshakes are what several tests expect
	plain := &fasthttp.Server{Logger: quiet, Handler: func(rc *fasthttp.RequestCtx) {
		if !m.ServeHTTPChallenge(rc) {
			rc.SetStatusCode(fasthttp.StatusNotFound)
		}
	}}
	secure := &fasthttp.Server{Logger: quiet, Handler: func(rc *fasthttp.RequestCtx) { rc.SetBodyString("ok") }}
	go func() { _ = plain.Serve(g.plain) }()
	go func() { _ = secure.Serve(tls.NewListener(g.tls, store.TLSConfig())) }()
	t.Cleanup(func() {
		m.Stop()
		_ = plain.Shutdown()
		_ = secure.Shutdown()
	})
	m.Start()
}

// handshake connects for name and returns the certificate the gateway served, verified
// against roots, and the stapled OCSP response; an error when the handshake fails.
func (g *gateway) handshake(name string, roots *x509.CertPool) (*x509.Certificate, []byte, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", g.tlsAddr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0], st.OCSPResponse, nil
}

// waitCert polls until the gateway serves name a certificate that verifies, other than
// serial not (nil: any).
func (g *gateway) waitCert(t *testing.T, name string, roots *x509.CertPool, not *big.Int, within time.Duration) (*x509.Certificate, []byte) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		leaf, staple, err := g.handshake(name, roots)
		if err == nil && (not == nil || leaf.SerialNumber.Cmp(not) != 0) {
			return leaf, staple
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no new certificate for %s within %s (last error: %v)", name, within, last)
	return nil, nil
}

func acmeConfig(tc *testCA, storage string, challenge string) *config.ACME {
	return &config.ACME{
		Email: "ops@weir.test", CA: tc.dir, CARoot: tc.root, Storage: storage,
		Challenges: []string{challenge}, AgreeTOS: true,
	}
}

// Each challenge type obtains a certificate for a managed host, the TLS listener serves it
// with its OCSP response stapled, and background renewal replaces it without a restart.
func TestIssueServeRenew(t *testing.T) {
	for _, challenge := range []string{config.ChallengeHTTP01, config.ChallengeTLSALPN01} {
		t.Run(challenge, func(t *testing.T) {
			g := newListeners(t)
			// One hour of validity, renewed once 0.1% of it (3.6 s) has passed: the test sees a
			// renewal by the background maintenance, which checks every 500 ms.
			tc := startCA(t, port(g.plain), port(g.tls), 3600)
			name := "app.weir.test"
			c := acmeConfig(tc, t.TempDir(), challenge)
			c.Hosts = []string{name}
			g.start(t, c, Options{renewCheck: 500 * time.Millisecond, renewRatio: 0.999, noARI: true})

			first, staple := g.waitCert(t, name, tc.roots(), nil, 15*time.Second)
			if first.Subject.CommonName != name && (len(first.DNSNames) != 1 || first.DNSNames[0] != name) {
				t.Fatalf("served certificate names %v, want %s", first.DNSNames, name)
			}
			if len(staple) == 0 {
				t.Error("no OCSP response stapled, although the certificate names a responder")
			} else if resp, err := ocsp.ParseResponseForCert(staple, first, tc.ca.GetIntermediateCert(0).Cert); err != nil || resp.Status != ocsp.Good {
				t.Errorf("stapled OCSP response: %v (status %v)", err, resp)
			}
			renewed, _ := g.waitCert(t, name, tc.roots(), first.SerialNumber, 20*time.Second)
			if renewed.NotBefore.Before(first.NotBefore) {
				t.Errorf("renewed certificate starts %s, before the first (%s)", renewed.NotBefore, first.NotBefore)
			}
		})
	}
}

// On demand: an allowed name gets its certificate during its first handshake; a name the
// allow-list does not cover gets no certificate and causes no ACME order, whatever its spelling.
func TestOnDemandAllowList(t *testing.T) {
	g := newListeners(t)
	tc := startCA(t, port(g.plain), port(g.tls), 0) // pebble's 90 days: no renewal here
	c := acmeConfig(tc, t.TempDir(), config.ChallengeTLSALPN01)
	c.OnDemand = &config.OnDemand{Allow: []string{"*.tenants.weir.test", "exact.weir.test"}}
	g.start(t, c, Options{noARI: true})

	for _, name := range []string{
		"evil.weir.test",
		"tenants.weir.test",         // the wildcard's parent is not covered
		"a.b.tenants.weir.test",     // nor two labels below it
		"exact.weir.test.evil.test", // a suffix trick
		"x_y.tenants.weir.test",     // not a host name a CA would certify
		"-x.tenants.weir.test",      // nor this
		"127.0.0.1",                 // an address: Go sends no SNI at all
		"",                          // no SNI
	} {
		if leaf, _, err := g.handshake(name, tc.roots()); err == nil {
			t.Errorf("%q: served a certificate for %v", name, leaf.DNSNames)
		}
	}
	if n := tc.orders.Load(); n != 0 {
		t.Fatalf("%d ACME orders for names outside the allow-list", n)
	}

	for _, name := range []string{"exact.weir.test", "Shop.Tenants.weir.test"} {
		leaf, _, err := g.handshake(name, tc.roots())
		if err != nil {
			t.Fatalf("%q: first handshake: %v", name, err)
		}
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if n := tc.orders.Load(); n != 2 {
		t.Errorf("%d ACME orders, want 2", n)
	}
	// The second handshake is served from memory: no order.
	if _, _, err := g.handshake("exact.weir.test", tc.roots()); err != nil {
		t.Fatal(err)
	}
	if n := tc.orders.Load(); n != 2 {
		t.Errorf("%d ACME orders after a repeated handshake, want 2", n)
	}
}

// The http-01 answer is given only for an open challenge, for its exact token and host: a
// guessed or altered request falls through to routing.
func TestHTTPChallengeFallsThrough(t *testing.T) {
	m, err := New(&config.ACME{Storage: t.TempDir(), Hosts: []string{"app.weir.test"}, AgreeTOS: true},
		Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	for _, target := range []string{
		"/.well-known/acme-challenge/abc",
		"/.well-known/acme-challenge/",
		"/.well-known/acme-challenge/../../etc/passwd",
		"/other",
	} {
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI(target)
		rc.Request.Header.SetHost("app.weir.test")
		if m.ServeHTTPChallenge(&rc) {
			t.Errorf("%s: answered %q with no challenge open", target, rc.Response.Body())
		}
	}
}

func TestAllowList(t *testing.T) {
	a := newAllowList([]string{"*.Example.com", "api.test.", "x.y.example.org"})
	tests := []struct {
		name string
		want bool
	}{
		{"a.example.com", true},
		{"example.com", false},
		{"a.b.example.com", false},
		{"api.test", true},
		{"x.y.example.org", true},
		{"y.example.org", false},
		{".example.com", false},
		{"a_b.example.com", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := a.covers(tt.name); got != tt.want {
			t.Errorf("covers(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	var none *allowList
	if none.covers("a.example.com") {
		t.Error("a nil allow-list covers a name")
	}
}

func TestZapLogsGoToZerolog(t *testing.T) {
	var buf strings.Builder
	m, err := New(&config.ACME{Storage: t.TempDir(), Hosts: []string{"app.weir.test"}, AgreeTOS: true},
		Options{Log: zerolog.New(&buf).Level(zerolog.InfoLevel)})
	if err != nil {
		t.Fatal(err)
	}
	m.Stop()
	m.magic.Logger.Named("renew").With(zap.String("identifier", "app.weir.test")).Warn("a warning")
	m.magic.Logger.Named("obtain").Named("acme_client").Error("challenge failed")
	got := buf.String()
	if strings.Contains(got, "challenge failed") {
		t.Errorf("the protocol client's error was logged at error level: %s", got)
	}
	for _, want := range []string{`"level":"warn"`, `"component":"acme"`, `"logger":"renew"`, `"identifier":"app.weir.test"`, `"message":"a warning"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log %s lacks %s", got, want)
		}
	}
}
