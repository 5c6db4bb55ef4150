package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CertPair names one PEM certificate chain and its private key.
type CertPair struct {
	CertFile, KeyFile string
}

// AutoCerts is a source of certificates for names the files do not cover: ACME (core/acme).
type AutoCerts interface {
	// GetCertificate answers a TLS-ALPN-01 validation, or returns the certificate of a name
	// Covers admits; nil and no error for any other name.
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
	// Covers reports whether a lower-case name gets a certificate of its own from here.
	Covers(name string) bool
	// NextProtos are protocols the listener must offer by ALPN for its validations.
	NextProtos() []string
}

// CertStore serves the certificates of a TLS listener, chosen by SNI. Files are checked for
// changes at most once per CertCheckInterval, from the handshake path itself, so a renewed
// certificate (certbot, cert-manager) is picked up without a restart and without a goroutine to
// stop. A file that fails to load keeps the previous certificate and is reported. OCSP
// responses are stapled to certificates that name a responder (ocsp.go).
//
// With an AutoCerts source, a handshake gets, in order: an ACME validation's answer; the file
// certificate whose names match the SNI name; the source's certificate for that name; the
// first file certificate. So a file certificate wins for the names it covers.
type CertStore struct {
	pairs   []CertPair
	auto    AutoCerts // nil without ACME
	onError func(error)

	cur       atomic.Pointer[certSet]
	nextCheck atomic.Int64 // unix nanoseconds
	mu        sync.Mutex   // one reload at a time

	stapleMu sync.Mutex
	staples  []stapleState // per pair: the OCSP staple's schedule (ocsp.go)
}

// CertCheckInterval is how often certificate files are checked for changes.
const CertCheckInterval = time.Second

type certSet struct {
	certs  []*tls.Certificate
	exact  map[string]*tls.Certificate
	wild   map[string]*tls.Certificate // "example.com" for "*.example.com"
	mtimes [][2]time.Time              // cert file, key file
}

// NewCertStore loads every pair; any failure is an error, so a listener never starts with a
// broken certificate. auto may be nil; without it, pairs must not be empty.
func NewCertStore(pairs []CertPair, auto AutoCerts, onError func(error)) (*CertStore, error) {
	if len(pairs) == 0 && auto == nil {
		return nil, errors.New("no certificates")
	}
	s := &CertStore{pairs: pairs, auto: auto, onError: onError, staples: make([]stapleState, len(pairs))}
	set, err := s.load(nil)
	if err != nil {
		return nil, err
	}
	s.cur.Store(set)
	s.nextCheck.Store(time.Now().Add(CertCheckInterval).UnixNano())
	s.maybeStaple(set)
	return s, nil
}

// load reads every pair whose files changed since prev (all when prev is nil).
func (s *CertStore) load(prev *certSet) (*certSet, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	var errs []error
	for i, p := range s.pairs {
		mt := [2]time.Time{modTime(p.CertFile), modTime(p.KeyFile)}
		if prev != nil && prev.mtimes[i] == mt {
			set.certs = append(set.certs, prev.certs[i])
			set.mtimes = append(set.mtimes, mt)
			continue
		}
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err == nil && c.Leaf == nil {
			c.Leaf, err = x509.ParseCertificate(c.Certificate[0])
		}
		if err != nil {
			err = fmt.Errorf("certificate %s: %w", p.CertFile, err)
			if prev == nil {
				return nil, err
			}
			errs = append(errs, err)
			// Keep serving the previous certificate, and try again at the next check.
			set.certs = append(set.certs, prev.certs[i])
			set.mtimes = append(set.mtimes, prev.mtimes[i])
			continue
		}
		set.certs = append(set.certs, &c)
		set.mtimes = append(set.mtimes, mt)
	}
	set.index()
	return set, errors.Join(errs...)
}

// index maps every name of set's certificates to its certificate. Earlier certificates win a
// name claimed twice, so the order of the list is the priority.
func (set *certSet) index() {
	for i := len(set.certs) - 1; i >= 0; i-- {
		c := set.certs[i]
		names := c.Leaf.DNSNames
		if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
			names = []string{c.Leaf.Subject.CommonName}
		}
		for _, ip := range c.Leaf.IPAddresses {
			names = append(names, ip.String())
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				set.wild[rest] = c
			} else {
				set.exact[n] = c
			}
		}
	}
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// maybeReload checks the files when the check interval has passed.
func (s *CertStore) maybeReload() {
	now := time.Now().UnixNano()
	next := s.nextCheck.Load()
	if now < next || !s.nextCheck.CompareAndSwap(next, now+int64(CertCheckInterval)) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := s.load(s.cur.Load())
	if err != nil && s.onError != nil {
		s.onError(err)
	}
	s.cur.Store(set)
	s.maybeStaple(set)
}

// Recheck makes the next handshake check the certificate files, whatever the interval: a
// config reload calls it, so a renewed certificate is served from the moment the operator
// asks for a reload.
func (s *CertStore) Recheck() { s.nextCheck.Store(0) }

// GetCertificate picks the certificate for the client's SNI name: an exact name, then a
// wildcard one level up, then (with AutoCerts) the source's, then the first certificate.
func (s *CertStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.auto != nil && IsACMEChallenge(hello) {
		return s.auto.GetCertificate(hello)
	}
	s.maybeReload()
	set := s.cur.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if s.auto == nil {
		return set.pick(name), nil
	}
	if c := set.lookup([]byte(name)); c != nil {
		return c, nil
	}
	// A failure to obtain is the source's to log (once, where it knows the context); the
	// handshake falls back to the first file certificate when there is one.
	c, err := s.auto.GetCertificate(hello)
	if c != nil || len(set.certs) == 0 {
		if c == nil && err == nil {
			err = fmt.Errorf("no certificate for %q", hello.ServerName)
		}
		return c, err
	}
	return set.certs[0], nil
}

// ACMEChallengeALPN is the protocol an ACME server's TLS-ALPN-01 validation offers (RFC 8737).
const ACMEChallengeALPN = "acme-tls/1"

// IsACMEChallenge reports whether hello is a TLS-ALPN-01 validation: it offers
// ACMEChallengeALPN alone (RFC 8737, section 3).
func IsACMEChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMEChallengeALPN
}

// Misdirected reports whether a request for host (a Host field, port allowed) that arrived on
// a TLS connection whose client asked for sni must be refused with 421 Misdirected Request:
// the certificate that connection was given does not cover host, and either always is set or
// host has a certificate of its own. The second case is a client that opened the connection
// for one site and sends requests for another, which that site's own certificate (and any
// policy tied to it) would have refused; with always, every host must be covered.
//
// The common request, whose host is its SNI name, costs one comparison.
func (s *CertStore) Misdirected(sni string, host []byte, always bool) bool {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.HasSuffix(host, []byte("]")) {
		host = host[:i]
	}
	host = bytes.TrimSuffix(bytes.TrimSuffix(bytes.TrimPrefix(host, []byte("[")), []byte("]")), []byte("."))
	sni = strings.TrimSuffix(sni, ".")
	if strings.EqualFold(sni, string(host)) { // no allocation: the conversion is only compared
		return false
	}
	var buf [256]byte
	if len(host) > len(buf) {
		return true // longer than any DNS name
	}
	name := buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		name[i] = c
	}
	set := s.cur.Load()
	sni = strings.ToLower(sni)
	// An SNI name the AutoCerts source covers got its certificate from there, which names
	// that name only, and the Host is another: given stays nil, covering nothing.
	given := set.lookup([]byte(sni))
	if given == nil && len(set.certs) > 0 && (s.auto == nil || !s.auto.Covers(sni)) {
		given = set.certs[0]
	}
	if given != nil && given.Leaf.VerifyHostname(string(name)) == nil {
		return false
	}
	return always || set.lookup(name) != nil || (s.auto != nil && s.auto.Covers(string(name)))
}

// pick is GetCertificate's choice for a lower-case name: an exact name, then a wildcard one
// level up, then the first certificate.
func (set *certSet) pick(name string) *tls.Certificate {
	if c := set.lookup([]byte(name)); c != nil {
		return c
	}
	return set.certs[0]
}

// lookup returns the certificate for a lower-case name, or nil when none claims it.
func (set *certSet) lookup(name []byte) *tls.Certificate {
	if c := set.exact[string(name)]; c != nil {
		return c
	}
	if i := bytes.IndexByte(name, '.'); i > 0 {
		return set.wild[string(name[i+1:])]
	}
	return nil
}

// TLSConfig is a server config with modern defaults: TLS 1.2 at least (1.3 preferred by Go),
// Go's default AEAD-only cipher suites, HTTP/1.1 offered by ALPN, and the protocols of the
// AutoCerts source's validations after it (no client but an ACME server asks for those).
func (s *CertStore) TLSConfig() *tls.Config {
	protos := []string{"http/1.1"}
	if s.auto != nil {
		protos = append(protos, s.auto.NextProtos()...)
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
		NextProtos:     protos,
	}
}
