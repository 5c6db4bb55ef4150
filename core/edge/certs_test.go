package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPair writes a certificate for names and its key, and returns them as a CertPair.
func testPair(t *testing.T, names ...string) CertPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}, &x509.Certificate{SerialNumber: big.NewInt(1)}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := CertPair{CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem")}
	for file, b := range map[string]*pem.Block{p.CertFile: {Type: "CERTIFICATE", Bytes: der}, p.KeyFile: {Type: "PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// fakeAuto covers the names of its map and counts what it was asked.
type fakeAuto struct {
	certs map[string]*tls.Certificate
	chal  *tls.Certificate
	asked []string
}

func (f *fakeAuto) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.asked = append(f.asked, h.ServerName)
	if IsACMEChallenge(h) {
		return f.chal, nil
	}
	return f.certs[strings.ToLower(strings.TrimSuffix(h.ServerName, "."))], nil
}
func (f *fakeAuto) Covers(name string) bool { return f.certs[name] != nil }
func (f *fakeAuto) NextProtos() []string    { return []string{ACMEChallengeALPN} }

func TestCertStoreWithAutoCerts(t *testing.T) {
	autoCert, chal := &tls.Certificate{}, &tls.Certificate{}
	auto := &fakeAuto{certs: map[string]*tls.Certificate{"auto.test": autoCert, "files.test": autoCert}, chal: chal}
	s, err := NewCertStore([]CertPair{testPair(t, "files.test", "*.wild.test")}, auto, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := s.cur.Load().certs[0]
	tests := []struct {
		name   string
		sni    string
		protos []string
		want   *tls.Certificate
		asked  bool
	}{
		{"file wins for its names", "files.test", nil, first, false},
		{"file wildcard", "a.wild.test", []string{"h2", "http/1.1"}, first, false},
		{"acme name", "Auto.Test.", nil, autoCert, true},
		{"validation goes to acme even for a file name", "files.test", []string{ACMEChallengeALPN}, chal, true},
		{"acme-tls/1 among others is no validation", "files.test", []string{"http/1.1", ACMEChallengeALPN}, first, false},
		{"unknown name falls back to the first file", "other.test", nil, first, true},
	}
	for _, tt := range tests {
		auto.asked = nil
		got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, SupportedProtos: tt.protos})
		if err != nil || got != tt.want {
			t.Errorf("%s: got %p, %v; want %p", tt.name, got, err, tt.want)
		}
		if (len(auto.asked) > 0) != tt.asked {
			t.Errorf("%s: source asked for %v", tt.name, auto.asked)
		}
	}
	if got := s.TLSConfig().NextProtos; len(got) != 2 || got[0] != "http/1.1" || got[1] != ACMEChallengeALPN {
		t.Errorf("NextProtos = %v", got)
	}
}

func TestCertStoreAutoOnly(t *testing.T) {
	autoCert := &tls.Certificate{}
	s, err := NewCertStore(nil, &fakeAuto{certs: map[string]*tls.Certificate{"auto.test": autoCert}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "auto.test"}); got != autoCert || err != nil {
		t.Errorf("auto.test: %p, %v", got, err)
	}
	for _, sni := range []string{"other.test", ""} {
		if got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: sni}); got != nil || err == nil {
			t.Errorf("%q: got %p, %v; want no certificate and an error", sni, got, err)
		}
	}
	if _, err := NewCertStore(nil, nil, nil); err == nil {
		t.Error("a store with neither files nor a source was accepted")
	}
	// Misdirected: an ACME certificate names its SNI name only.
	tests := []struct {
		sni, host string
		always    bool
		want      bool
	}{
		{"auto.test", "auto.test:443", false, false},
		{"auto.test", "AUTO.test.", false, false},
		{"auto.test", "other.test", false, false}, // other.test has no certificate of its own
		{"auto.test", "other.test", true, true},
		{"other.test", "auto.test", false, true}, // auto.test has its own
	}
	for _, tt := range tests {
		if got := s.Misdirected(tt.sni, []byte(tt.host), tt.always); got != tt.want {
			t.Errorf("Misdirected(%q, %q, %v) = %v, want %v", tt.sni, tt.host, tt.always, got, tt.want)
		}
	}
}
