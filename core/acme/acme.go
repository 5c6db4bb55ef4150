// Package acme obtains and renews the TLS listener's certificates from an ACME CA (RFC 8555):
// the names of server.tls.acme.hosts at start, and on demand, during a handshake, the names
// its allow-list admits. It wraps certmagic, which keeps certificates and account keys on disk,
// renews them in the background, retries failures with backoff and staples OCSP responses;
// this package adds the allow-list, the fasthttp side of the http-01 challenge and certmagic's
// logs in zerolog.
//
// edge.CertStore consults a Manager after the certificate files, so a file certificate wins
// for the names it covers.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/rs/zerolog"
	"go.uber.org/zap"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/edge"
)

// DefaultOnDemandTimeout bounds a handshake waiting for an on-demand certificate.
const DefaultOnDemandTimeout = 30 * time.Second

// Options are what New needs besides the config section.
type Options struct {
	// HTTPPort and TLSPort are the ports of this gateway's plain and TLS listeners, where the
	// CA's validation arrives (forwarded from 80 and 443 when they differ). 0 means none:
	// certmagic then binds 80 or 443 itself for the duration of a challenge, which works only
	// when the port is free and the process may bind it.
	HTTPPort, TLSPort int
	Log               zerolog.Logger

	// Tests shorten the renewal cycle; zero keeps certmagic's defaults.
	renewCheck time.Duration
	renewRatio float64
	noARI      bool
}

// Manager is one ACME account's certificates for one TLS listener.
type Manager struct {
	// magic manages hosts and renews every certificate; onDemand (nil without an allow-list)
	// obtains at handshake time. They share one cache, one storage and one account. Two are
	// needed because certmagic does not obtain a config's hosts at start when that config
	// does on-demand issuance, and because a handshake for a managed host must never wait for
	// an order.
	magic    *certmagic.Config
	onDemand *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	cache    *certmagic.Cache
	hosts    []string
	managed  map[string]bool
	allow    *allowList // nil: no on-demand issuance
	timeout  time.Duration
	http01   bool
	alpn     bool
	log      zerolog.Logger

	startOnce, stopOnce sync.Once
	stop                context.CancelFunc
}

// New prepares a Manager from c (already validated). It reads ca_root and creates the
// storage directory but does not contact the CA: Start does.
func New(c *config.ACME, o Options) (*Manager, error) {
	m := &Manager{
		managed: map[string]bool{},
		timeout: DefaultOnDemandTimeout,
		http01:  len(c.Challenges) == 0,
		alpn:    len(c.Challenges) == 0,
		log:     o.Log.With().Str("component", "acme").Logger(),
	}
	for _, ch := range c.Challenges {
		m.http01 = m.http01 || ch == config.ChallengeHTTP01
		m.alpn = m.alpn || ch == config.ChallengeTLSALPN01
	}
	for _, h := range c.Hosts {
		h = normalize(h)
		if !m.managed[h] {
			m.managed[h] = true
			m.hosts = append(m.hosts, h)
		}
	}
	if od := c.OnDemand; od != nil {
		m.allow = newAllowList(od.Allow)
		if od.Timeout > 0 {
			m.timeout = od.Timeout
		}
	}
	dir := c.Storage
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("acme storage: %w; set server.tls.acme.storage", err)
		}
		dir = filepath.Join(base, "weir", "acme")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("acme storage: %w", err)
	}
	var roots *x509.CertPool
	if c.CARoot != "" {
		pem, err := os.ReadFile(c.CARoot)
		if err != nil {
			return nil, fmt.Errorf("acme ca_root: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme ca_root %s: no PEM certificate in it", c.CARoot)
		}
	}
	ca := c.CA
	switch ca {
	case "", config.ACMEProduction:
		ca = certmagic.LetsEncryptProductionCA
	case config.ACMEStaging:
		ca = certmagic.LetsEncryptStagingCA
	}

	zl := zap.New(zapCore{log: m.log})
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: o.renewCheck,
		OCSPCheckInterval:  o.renewCheck,
		Logger:             zl,
	})
	newConfig := func(od *certmagic.OnDemandConfig) (*certmagic.Config, *certmagic.ACMEIssuer) {
		cfg := certmagic.New(m.cache, certmagic.Config{
			Storage:            &certmagic.FileStorage{Path: dir},
			RenewalWindowRatio: o.renewRatio,
			DisableARI:         o.noARI,
			OnDemand:           od,
			Logger:             zl,
		})
		iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
			CA:                      ca,
			Email:                   c.Email,
			Agreed:                  c.AgreeTOS,
			DisableHTTPChallenge:    !m.http01,
			DisableTLSALPNChallenge: !m.alpn,
			AltHTTPPort:             o.HTTPPort,
			AltTLSALPNPort:          o.TLSPort,
			TrustedRoots:            roots,
			Logger:                  zl,
		})
		cfg.Issuers = []certmagic.Issuer{iss}
		return cfg, iss
	}
	m.magic, m.issuer = newConfig(nil)
	if m.allow != nil {
		// certmagic asks before every on-demand order; GetCertificate asks first, so this is
		// the second of two locks on the same door.
		m.onDemand, _ = newConfig(&certmagic.OnDemandConfig{DecisionFunc: func(_ context.Context, name string) error {
			if !m.allow.covers(normalize(name)) {
				return fmt.Errorf("%q is not in server.tls.acme.on_demand.allow", name)
			}
			return nil
		}})
	}
	return m, nil
}

// Start loads or obtains the certificates of hosts in the background (a failure is logged
// by certmagic and retried with backoff; nothing waits for it). Only the first call counts:
// the engine calls it when its first listener serves, so a challenge never arrives before
// anyone listens.
func (m *Manager) Start() {
	m.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		m.stop = cancel
		if len(m.hosts) == 0 {
			return
		}
		if err := m.magic.ManageAsync(ctx, m.hosts); err != nil {
			m.log.Error().Err(err).Strs("hosts", m.hosts).Msg("acme: manage certificates")
		}
	})
}

// Stop ends background renewal and any issuance in progress.
func (m *Manager) Stop() {
	m.startOnce.Do(func() {}) // a Start after Stop does nothing
	m.stopOnce.Do(func() {
		if m.stop != nil {
			m.stop()
		}
		m.cache.Stop()
	})
}

// NextProtos is what the TLS listener must offer by ALPN for this Manager's challenges.
func (m *Manager) NextProtos() []string {
	if m.alpn {
		return []string{edge.ACMEChallengeALPN}
	}
	return nil
}

// Covers reports whether name (lower case, no trailing dot) is one this Manager serves: a
// managed host or a name the on-demand allow-list admits.
func (m *Manager) Covers(name string) bool {
	return m.managed[name] || m.allow.covers(name)
}

// GetCertificate answers a TLS-ALPN-01 validation, or returns the certificate of a name the
// Manager covers: from memory, from storage, or (allow-list only) obtained now, waiting at
// most the on-demand timeout. For any other name it returns nil and no error, and nothing
// reaches the CA.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if edge.IsACMEChallenge(hello) {
		if !m.alpn {
			return nil, errors.New("acme: tls-alpn-01 is not enabled")
		}
		return m.magic.GetCertificate(hello)
	}
	name := normalize(hello.ServerName)
	switch {
	case m.managed[name]:
		// From memory only: a host whose certificate is still being obtained gets none yet.
		return m.magic.GetCertificate(hello)
	case m.allow.covers(name):
		ctx, cancel := context.WithTimeout(hello.Context(), m.timeout)
		defer cancel()
		return m.onDemand.GetCertificateWithContext(ctx, hello)
	}
	return nil, nil
}

func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// allowList admits exact names and "*.example.com" patterns, which cover one label.
type allowList struct {
	exact map[string]bool
	wild  map[string]bool // "example.com" for "*.example.com"
}

func newAllowList(names []string) *allowList {
	a := &allowList{exact: map[string]bool{}, wild: map[string]bool{}}
	for _, n := range names {
		n = normalize(n)
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			a.wild[rest] = true
		} else {
			a.exact[n] = true
		}
	}
	return a
}

func (a *allowList) covers(name string) bool {
	if a == nil || name == "" {
		return false
	}
	if a.exact[name] {
		return true
	}
	label, rest, ok := strings.Cut(name, ".")
	return ok && hostLabel(label) && a.wild[rest]
}

// hostLabel reports whether l is one DNS label a CA would certify, so that a wildcard never
// lets a client's junk SNI (or one label hiding a dot-less trick) become an ACME order.
func hostLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
