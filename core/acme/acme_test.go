package acme

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/crypto/ocsp"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/acme/acmetest"
	"github.com/weir-gateway/weir/core/edge"
)

// gateway is the TLS side of a listener as the engine builds it (an edge.CertStore with the
// Manager behind it) and a plain listener that answers http-01 validations, each a fasthttp
// server on 127.0.0.1.
type gateway struct {
	m        *Manager
	plain    net.Listener
	tls      net.Listener
	tlsAddr  string
	httpAddr string

	// answered, when set, sees each http-01 request the Manager answered, while its
	// challenge is still open.
	answered func(rc *fasthttp.RequestCtx)
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
	o.Log = zerolog.New(acmetest.Log(t)).Level(zerolog.WarnLevel)
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
		} else if g.answered != nil {
			g.answered(rc)
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

// challengeSpellings asks m for the token of rc (an answered http-01 request) in ways that must
// not be answered, and returns those that were.
func challengeSpellings(m *Manager, rc *fasthttp.RequestCtx) []string {
	path, host := string(rc.Path()), string(rc.Host())
	var leaks []string
	for _, v := range []struct{ method, target, host string }{
		{"GET", path, "other.weir.test"},  // another site's Host (DNS rebinding)
		{"GET", path, "evil.test"},        // any other Host
		{"POST", path, host},              // only GET is a validation
		{"HEAD", path, host},              // nor HEAD
		{"GET", path + "x", host},         // a longer token
		{"GET", path[:len(path)-1], host}, // a prefix of it
		{"GET", path + "/", host},
		{"GET", strings.ToUpper(path), host},
		{"GET", "/x/.." + path, host}, // not the exact path
	} {
		var probe fasthttp.RequestCtx
		probe.Request.Header.SetMethod(v.method)
		probe.Request.SetRequestURI(v.target)
		probe.Request.Header.SetHost(v.host)
		if m.ServeHTTPChallenge(&probe) {
			leaks = append(leaks, v.method+" "+v.host+v.target)
		}
	}
	return leaks
}

func acmeConfig(tc *acmetest.CA, storage string, challenge string) *config.ACME {
	return &config.ACME{
		Email: "ops@weir.test", CA: tc.Dir, CARoot: tc.Root, Storage: storage,
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
			tc := acmetest.Start(t, port(g.plain), port(g.tls), 3600)
			name := "app.weir.test"
			c := acmeConfig(tc, t.TempDir(), challenge)
			c.Hosts = []string{name}
			var mu sync.Mutex
			var answered int
			var leaks []string
			if challenge == config.ChallengeHTTP01 {
				// While the CA's request is answered, the challenge is open: the same token
				// asked for another way must still get nothing.
				g.answered = func(rc *fasthttp.RequestCtx) {
					mu.Lock()
					defer mu.Unlock()
					answered++
					leaks = append(leaks, challengeSpellings(g.m, rc)...)
				}
			}
			g.start(t, c, Options{renewCheck: 500 * time.Millisecond, renewRatio: 0.999, noARI: true})

			first, staple := g.waitCert(t, name, tc.Roots(), nil, 15*time.Second)
			if first.Subject.CommonName != name && (len(first.DNSNames) != 1 || first.DNSNames[0] != name) {
				t.Fatalf("served certificate names %v, want %s", first.DNSNames, name)
			}
			if len(staple) == 0 {
				t.Error("no OCSP response stapled, although the certificate names a responder")
			} else if resp, err := ocsp.ParseResponseForCert(staple, first, tc.Intermediate()); err != nil || resp.Status != ocsp.Good {
				t.Errorf("stapled OCSP response: %v (status %v)", err, resp)
			}
			mu.Lock()
			if challenge == config.ChallengeHTTP01 && answered == 0 {
				t.Error("the CA's http-01 request never reached the listener")
			}
			for _, l := range leaks {
				t.Errorf("answered a challenge request it must not: %s", l)
			}
			mu.Unlock()
			renewed, _ := g.waitCert(t, name, tc.Roots(), first.SerialNumber, 20*time.Second)
			if renewed.NotBefore.Before(first.NotBefore) {
				t.Errorf("renewed certificate starts %s, before the first (%s)", renewed.NotBefore, first.NotBefore)
			}
		})
	}
}

// On demand: an allowed name gets its certificate during its first handshake; a name the
// allow-list does not cover gets no certificate and causes no ACME order, whatever its spelling.
// A managed host beside the allow-list is obtained at start, not at its first handshake.
func TestOnDemandAllowList(t *testing.T) {
	g := newListeners(t)
	tc := acmetest.Start(t, port(g.plain), port(g.tls), 0) // pebble's 90 days: no renewal here
	c := acmeConfig(tc, t.TempDir(), config.ChallengeTLSALPN01)
	c.Hosts = []string{"managed.weir.test"}
	c.OnDemand = &config.OnDemand{Allow: []string{"*.tenants.weir.test", "exact.weir.test"}}
	g.start(t, c, Options{noARI: true})
	for deadline := time.Now().Add(10 * time.Second); tc.Orders() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the managed host was not ordered at start")
		}
	}
	g.waitCert(t, "managed.weir.test", tc.Roots(), nil, 10*time.Second)
	if n := tc.Orders(); n != 1 {
		t.Fatalf("%d ACME orders for one managed host", n)
	}

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
		if leaf, _, err := g.handshake(name, tc.Roots()); err == nil {
			t.Errorf("%q: served a certificate for %v", name, leaf.DNSNames)
		}
	}
	if n := tc.Orders(); n != 1 {
		t.Fatalf("%d ACME orders for names outside the allow-list", n-1)
	}

	for _, name := range []string{"exact.weir.test", "Shop.Tenants.weir.test"} {
		leaf, _, err := g.handshake(name, tc.Roots())
		if err != nil {
			t.Fatalf("%q: first handshake: %v", name, err)
		}
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if n := tc.Orders(); n != 3 {
		t.Errorf("%d ACME orders, want 3", n)
	}
	// The second handshake is served from memory: no order.
	if _, _, err := g.handshake("exact.weir.test", tc.Roots()); err != nil {
		t.Fatal(err)
	}
	if n := tc.Orders(); n != 3 {
		t.Errorf("%d ACME orders after a repeated handshake, want 3", n)
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
