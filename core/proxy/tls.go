package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSOptions configures TLS to an upstream's targets.
type TLSOptions struct {
	// CAFile is a PEM bundle of the CAs that may sign the targets' certificates; empty uses the
	// system roots.
	CAFile string
	// ServerName is verified against the target's certificate and sent as SNI; empty uses the
	// target's host name (for an IP target, the IP).
	ServerName string
	// InsecureSkipVerify accepts any certificate. It exists for lab setups only: it removes all
	// protection against an attacker in the middle.
	InsecureSkipVerify bool
	// CertFile and KeyFile, set together, are the client certificate presented to the targets
	// (mutual TLS).
	CertFile, KeyFile string
}

// config builds the client TLS config: TLS 1.2 at least, Go's default (modern) cipher suites.
func (o *TLSOptions) config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // opt-in, warned about at load
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("tls: cert_file and key_file go together")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
