package edge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// caSigned writes a chain (a leaf for name that names responder, then its CA) and the leaf's
// key, and returns them with the CA and its key.
func caSigned(t *testing.T, name, responder string) (CertPair, *x509.Certificate, crypto.Signer) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), OCSPServer: []string{responder}},
		ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	p := CertPair{CertFile: filepath.Join(dir, "chain.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	if err := os.WriteFile(p.CertFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, ca, caKey
}

// TestOCSPStapleForFiles serves a file certificate whose responder answers good, revoked, an
// out-of-date answer, an HTTP error, or a signature by the wrong key: only the good answer is
// stapled, and a failure is reported once.
func TestOCSPStapleForFiles(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		staple bool
	}{
		{"good", "good", true},
		{"revoked", "revoked", false},
		{"out of date", "stale", false},
		{"http error", "500", false},
		{"wrong signer", "forged", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ca *x509.Certificate
			var caKey crypto.Signer
			var mu sync.Mutex
			asked := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				asked++
				mu.Unlock()
				body, _ := io.ReadAll(r.Body)
				req, err := ocsp.ParseRequest(body)
				if err != nil || tt.answer == "500" {
					http.Error(w, "no", http.StatusInternalServerError)
					return
				}
				tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber,
					ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(30 * time.Minute)}
				signer := caKey
				switch tt.answer {
				case "revoked":
					tmpl.Status, tmpl.RevokedAt = ocsp.Revoked, time.Now().Add(-time.Minute)
				case "stale":
					tmpl.ThisUpdate, tmpl.NextUpdate = time.Now().Add(-time.Hour), time.Now().Add(-time.Minute)
				case "forged":
					signer, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				}
				resp, _ := ocsp.CreateResponse(ca, ca, tmpl, signer)
				_, _ = w.Write(resp)
			}))
			defer srv.Close()
			var pair CertPair
			pair, ca, caKey = caSigned(t, "files.test", srv.URL)
			var errs []string
			s, err := NewCertStore([]CertPair{pair}, nil, func(err error) {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			hello := &tls.ClientHelloInfo{ServerName: "files.test"}
			// The fetch is asynchronous: wait until the responder was asked and the result is in.
			var got []byte
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				c, _ := s.GetCertificate(hello)
				got = c.OCSPStaple
				mu.Lock()
				reported := len(errs) > 0 // after the fetch ended: a failure is reported last
				mu.Unlock()
				if len(got) > 0 || reported {
					break
				}
			}
			if (len(got) > 0) != tt.staple {
				t.Fatalf("stapled %d bytes, want a staple: %v", len(got), tt.staple)
			}
			mu.Lock()
			defer mu.Unlock()
			if asked != 1 {
				t.Errorf("responder asked %d times, want 1 (the next fetch is due later)", asked)
			}
			if tt.staple != (len(errs) == 0) || (len(errs) > 0 && !strings.Contains(errs[0], "ocsp staple for")) {
				t.Errorf("reported %q", errs)
			}
		})
	}
}
