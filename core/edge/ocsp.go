package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"
)

// OCSP stapling for file certificates. A certificate that names an OCSP responder (and whose
// file carries its issuer after it) gets the responder's "good" answer stapled to every
// handshake, fetched after loading and again halfway through each answer's validity. Fetches
// run in a short-lived goroutine each, bounded by ocspTimeout, started from the same
// once-a-second check that reloads the files, so nothing waits for a responder and there is
// no loop to stop. A failure keeps the previous staple while it is valid, is reported once
// until a fetch succeeds again, and is retried every ocspRetry.

const (
	ocspTimeout = 10 * time.Second
	ocspRetry   = time.Minute
)

var ocspClient = &http.Client{Timeout: ocspTimeout}

// stapleState is one pair's schedule. cert is the certificate it refers to: a certificate
// loaded anew (its file changed) is not it, and is fetched for at once.
type stapleState struct {
	cert    *tls.Certificate
	next    time.Time // when to fetch again
	expires time.Time // the served staple's NextUpdate; zero when none or open-ended
	busy    bool
	failing bool
}

// maybeStaple starts a fetch for each certificate of set whose staple is due.
func (s *CertStore) maybeStaple(set *certSet) {
	now := time.Now()
	s.stapleMu.Lock()
	defer s.stapleMu.Unlock()
	for i, c := range set.certs {
		st := &s.staples[i]
		if len(c.Leaf.OCSPServer) == 0 || len(c.Certificate) < 2 || st.busy || (st.cert == c && now.Before(st.next)) {
			continue
		}
		st.cert, st.busy = c, true
		go s.staple(i, c)
	}
}

// staple fetches c's OCSP response and, when it is good, serves c with it from then on. On a
// failure, a staple that has expired meanwhile is no longer served.
func (s *CertStore) staple(i int, c *tls.Certificate) {
	raw, resp, err := fetchOCSP(c)
	now := time.Now()
	s.stapleMu.Lock()
	st := &s.staples[i]
	st.busy = false
	report := err != nil && !st.failing
	st.failing = err != nil
	expired := err != nil && !st.expires.IsZero() && now.After(st.expires)
	switch {
	case err != nil:
		st.next = now.Add(ocspRetry)
	case resp.NextUpdate.IsZero(): // the responder promises nothing: ask again in an hour
		st.next, st.expires = now.Add(time.Hour), time.Time{}
	default:
		st.next = resp.ThisUpdate.Add(resp.NextUpdate.Sub(resp.ThisUpdate) / 2)
		st.expires = resp.NextUpdate
	}
	s.stapleMu.Unlock()
	if report && s.onError != nil {
		s.onError(fmt.Errorf("ocsp staple for %s: %w; retrying every %s", s.pairs[i].CertFile, err, ocspRetry))
	}
	if err == nil || expired {
		s.setStaple(i, c, raw) // raw is nil when the old staple expired
	}
}

// setStaple serves a copy of c with staple in c's place, unless the file was reloaded
// meanwhile (its new certificate gets its own fetch).
func (s *CertStore) setStaple(i int, c *tls.Certificate, staple []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.cur.Load()
	if cur.certs[i] != c {
		return
	}
	stapled := *c
	stapled.OCSPStaple = staple
	next := &certSet{
		certs: append([]*tls.Certificate(nil), cur.certs...), mtimes: cur.mtimes,
		exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{},
	}
	next.certs[i] = &stapled
	next.index()
	s.cur.Store(next)
	s.stapleMu.Lock()
	if s.staples[i].cert == c {
		s.staples[i].cert = &stapled
	}
	s.stapleMu.Unlock()
}

// fetchOCSP asks c's responder about c and returns the response if it is good and current.
func fetchOCSP(c *tls.Certificate) ([]byte, *ocsp.Response, error) {
	issuer, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		return nil, nil, fmt.Errorf("issuer: %w", err)
	}
	req, err := ocsp.CreateRequest(c.Leaf, issuer, nil)
	if err != nil {
		return nil, nil, err
	}
	hr, err := ocspClient.Post(c.Leaf.OCSPServer[0], "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		return nil, nil, err
	}
	defer hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("responder answered %s", hr.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(hr.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	resp, err := ocsp.ParseResponseForCert(raw, c.Leaf, issuer)
	switch {
	case err != nil:
		return nil, nil, err
	case resp.Status != ocsp.Good:
		return nil, nil, errors.New("responder says the certificate is not good (revoked or unknown)")
	case !resp.NextUpdate.IsZero() && !resp.NextUpdate.After(time.Now()):
		return nil, nil, errors.New("response is out of date")
	}
	return raw, resp, nil
}
