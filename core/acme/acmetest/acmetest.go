// Package acmetest runs pebble, Let's Encrypt's test CA, inside a test process, so tests obtain
// real certificates over real http-01 and tls-alpn-01 validations against a gateway on
// loopback ports. Only tests import it; no binary links it.
package acmetest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
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
	"golang.org/x/crypto/ocsp"
)

// CA is a running pebble: its web front end on an httptest TLS server, its validation
// authority pointed at the gateway's ports and at a DNS server that resolves every name to
// 127.0.0.1, and an OCSP responder that pebble names in every certificate.
type CA struct {
	// Dir is the ACME directory URL; Root a PEM file of the front end's own certificate, for
	// server.tls.acme.ca_root.
	Dir, Root string

	ca     *ca.CAImpl
	orders atomic.Int64
	ocsp   atomic.Int64
}

// Start runs a CA until t ends. It validates http-01 on 127.0.0.1:httpPort and tls-alpn-01 on
// 127.0.0.1:tlsPort, whatever the name, and issues certificates valid for validity seconds
// (0: pebble's 90 days).
func Start(t *testing.T, httpPort, tlsPort int, validity uint64) *CA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // validate at once, not after up to 5 s
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no simulated bad nonces: retries would only slow tests
	t.Setenv("PEBBLE_AUTHZREUSE", "0")      // every order validates again
	c := &CA{}
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	ocspSrv := httptest.NewServer(http.HandlerFunc(c.answerOCSP))
	t.Cleanup(ocspSrv.Close)

	store := db.NewMemoryStore()
	// RSA: pebble hands out its intermediate's key, which signs the OCSP responses, as RSA only.
	c.ca = ca.New(logger, store, ocspSrv.URL, "rsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: validity},
	})
	vaImpl := va.New(logger, httpPort, tlsPort, false, startDNS(t), store)
	front := wfe.New(logger, store, vaImpl, c.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/order-plz") {
			c.orders.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.Dir = srv.URL + wfe.DirectoryPath
	c.Root = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(c.Root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// answerOCSP says "good" for any serial, signed by the intermediate, valid for 10 minutes
// (inside any certificate a test asks for).
func (c *CA) answerOCSP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	issuer := c.Intermediate()
	resp, err := ocsp.CreateResponse(issuer, issuer, ocsp.Response{
		Status: ocsp.Good, SerialNumber: req.SerialNumber,
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(10 * time.Minute),
	}, c.ca.GetIntermediateKey(0))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	c.ocsp.Add(1)
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(resp)
}

// Roots trusts the certificates the CA issues.
func (c *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.ca.GetRootCert(0).Cert)
	return p
}

// Intermediate is the certificate that signs issued certificates and OCSP responses.
func (c *CA) Intermediate() *x509.Certificate { return c.ca.GetIntermediateCert(0).Cert }

// Orders is how many new-order requests the CA has received.
func (c *CA) Orders() int64 { return c.orders.Load() }

// startDNS answers every A question with 127.0.0.1 and every other with nothing, over TCP
// (pebble's validation authority asks over TCP).
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
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

// Log is a writer to t's log until t ends, then to nowhere: certmagic's jobs (an order a
// finished handshake started, a lock release) may log after the manager stops, and a test's
// log may not be written after it ends.
func Log(t *testing.T) io.Writer {
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
