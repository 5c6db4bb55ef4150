package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/weir-gateway/weir/config"
	"github.com/weir-gateway/weir/core/acme"
	"github.com/weir-gateway/weir/core/edge"
	"github.com/weir-gateway/weir/core/filter"
)

// listener is one listener of server.listen: its settings, its fasthttp server (each has
// its own, because the handler differs: a listener's TLS certificates decide 421 answers,
// and redirect_https answers before routing) and, once Listen ran, its socket. Every
// listener serves the same snapshot.
type listener struct {
	name string // server.listen, or server.listen[i] when there are several
	cfg  config.Listener
	srv  *fasthttp.Server
	ln   net.Listener // bound by Listen; nil before
	// serving is true while serve accepts on the listener (readiness: Engine.Ready).
	serving atomic.Bool

	// The listener's certificates when it serves TLS (nil otherwise). sniCheck refuses a Host
	// the connection's certificate does not cover (tls.strict_sni_host: auto or always),
	// sniAlways for every host rather than those with a certificate of their own.
	certs     *edge.CertStore
	sniCheck  bool
	sniAlways bool

	// redirect is the `redirect` filter with https: true, for a redirect_https listener;
	// it answers every request sent over plain HTTP before routing.
	redirect filter.Filter
}

// newListeners prepares every configured listener: certificates loaded, servers built, the
// redirect of redirect_https listeners built from the registry's `redirect` filter (core
// knows filters only through the registry). Nothing is bound yet.
func (e *Engine) newListeners(cfg *config.Config) error {
	ls := cfg.Server.Listeners()
	if len(ls) == 0 {
		return errors.New("server.listen: no listener")
	}
	auto, err := e.newACME(cfg, ls)
	if err != nil {
		return err
	}
	for i, lc := range ls {
		l := &listener{name: cfg.ListenerPath(i), cfg: lc}
		l.srv = e.newServer(cfg.Server, func(rc *fasthttp.RequestCtx) { e.handle(rc, l) })
		if t := lc.TLS; t != nil {
			where := l.name + ".tls"
			if t == cfg.Server.TLS {
				where = "server.tls"
			}
			var from edge.AutoCerts
			if t.ACME != nil {
				from = auto
			}
			if l.certs, err = newCertStore(t, where, configDir(cfg), from, e.log); err != nil {
				return err
			}
			l.sniCheck = t.StrictSNIHost != config.StrictSNINever
			l.sniAlways = t.StrictSNIHost == config.StrictSNIAlways
		}
		e.listeners = append(e.listeners, l)
	}
	e.h2 = e.newH2(cfg.Server)
	return e.buildRedirects()
}

// h2 reports whether the listener serves HTTP/2 over TLS (negotiated by ALPN).
func (l *listener) h2() bool { return l.certs != nil && l.cfg.Speaks(config.ProtocolH2) }

// h2c reports whether the plain listener takes HTTP/2 with prior knowledge.
func (l *listener) h2c() bool { return l.certs == nil && l.cfg.Speaks(config.ProtocolH2C) }

// newACME makes the engine's one ACME manager when a TLS listener has tls.acme: every such
// listener takes certificates from it, so they must agree on its settings. http-01
// validations arrive at the first plain listener's port, tls-alpn-01 at the first ACME
// listener's.
func (e *Engine) newACME(cfg *config.Config, ls []config.Listener) (*acme.Manager, error) {
	first, httpPort := -1, 0
	for i, l := range ls {
		if l.TLS == nil && httpPort == 0 {
			httpPort = listenPort(l.Address)
		}
		if l.TLS == nil || l.TLS.ACME == nil {
			continue
		}
		if first < 0 {
			first = i
		} else if !reflect.DeepEqual(l.TLS.ACME, ls[first].TLS.ACME) {
			return nil, &config.Error{Path: cfg.ListenerPath(i) + ".tls.acme",
				Err: fmt.Errorf("differs from %s.tls.acme; the listeners share one ACME account and certificate storage, so write the same settings", cfg.ListenerPath(first))}
		}
	}
	if first < 0 {
		return nil, nil
	}
	where := cfg.ListenerPath(first) + ".tls.acme"
	if ls[first].TLS == cfg.Server.TLS {
		where = "server.tls.acme"
	}
	mgr, err := acme.New(ls[first].TLS.ACME, acme.Options{HTTPPort: httpPort, TLSPort: listenPort(ls[first].Address), Log: e.log})
	if err != nil {
		return nil, &config.Error{Path: where, Err: err}
	}
	e.acme = mgr
	return mgr, nil
}

// buildRedirects (re)builds the redirect of every redirect_https listener, to the port of
// the first TLS listener: the bound one once Listen ran (a configured port 0 is known only
// then), the configured one before.
func (e *Engine) buildRedirects() error {
	port := 443
	for _, l := range e.listeners {
		if l.cfg.TLS == nil {
			continue
		}
		addr := l.cfg.Address
		if l.ln != nil {
			addr = l.ln.Addr().String()
		}
		if _, p, err := net.SplitHostPort(addr); err == nil {
			port, _ = strconv.Atoi(p)
		}
		break
	}
	for _, l := range e.listeners {
		if !l.cfg.RedirectHTTPS {
			continue
		}
		factory, ok := filter.Lookup("redirect")
		if !ok {
			return fmt.Errorf("%s.redirect_https: this build has no redirect filter", l.name)
		}
		args := map[string]any{"https": true, "https_port": port}
		if l.cfg.RedirectStatus != 0 {
			args["status"] = l.cfg.RedirectStatus
		}
		f, err := factory(filter.Env{Filter: "redirect", Log: e.log, Shared: e.shared},
			func(v any) error { return config.DecodeStrict(args, v) })
		if err != nil {
			return fmt.Errorf("%s.redirect_https: %w", l.name, err)
		}
		closeFilter(l.redirect)
		l.redirect = f
	}
	return nil
}

// closeFilter releases a filter that holds resources.
func closeFilter(f filter.Filter) {
	if c, ok := f.(io.Closer); ok {
		_ = c.Close()
	}
}

// Listen binds every listener of server.listen, in order; when one fails, those already
// bound are closed. ServeListeners then serves them.
func (e *Engine) Listen() error {
	for _, l := range e.listeners {
		ln, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			e.closeListeners()
			return fmt.Errorf("%s: listen %s: %w", l.name, l.cfg.Address, err)
		}
		l.ln = ln
	}
	return e.buildRedirects()
}

func (e *Engine) closeListeners() {
	for _, l := range e.listeners {
		if l.ln != nil {
			_ = l.ln.Close()
			l.ln = nil
		}
	}
}

// ListenerURLs returns the base URL of every bound listener ("https://127.0.0.1:8443"), in
// the order of server.listen.
func (e *Engine) ListenerURLs() []string {
	var out []string
	for _, l := range e.listeners {
		if l.ln == nil {
			continue
		}
		scheme := "http://"
		if l.certs != nil {
			scheme = "https://"
		}
		out = append(out, scheme+l.ln.Addr().String())
	}
	return out
}

// ServeListeners serves every listener bound by Listen until Shutdown. It returns nil once
// all have stopped cleanly, or the first error of one (the others keep serving until
// Shutdown).
func (e *Engine) ServeListeners() error {
	e.serveAll.Store(true)
	e.startACME()
	errc := make(chan error, len(e.listeners))
	n := 0
	for _, l := range e.listeners {
		if l.ln == nil {
			continue
		}
		n++
		// Wrapped here, not in the goroutine: a Shutdown right after this returns clears l.ln.
		ln := e.wrap(l)
		go func() { errc <- l.serve(ln) }()
	}
	if n == 0 {
		return errors.New("no listener bound (call Listen first)")
	}
	for range n {
		if err := <-errc; err != nil {
			return err
		}
	}
	return nil
}

// wrap layers a bound listener's socket as its config asks, outermost last: the PROXY
// protocol header is read first (it precedes the TLS handshake on the wire), then TLS, or on
// a plain listener the h2c sniff and the plain-HTTP guard, then the Parker, and on a TLS
// listener the request guard outside it (edge.GuardTLS says why).
func (e *Engine) wrap(l *listener) net.Listener {
	ln := l.ln
	if l.cfg.ProxyProtocolOn() {
		mode := l.cfg.ProxyProtocol
		ln = edge.ProxyProtocol(ln, edge.ProxyOptions{
			V1:      mode == config.ProxyProtocolV1 || mode == config.ProxyProtocolAny,
			V2:      mode == config.ProxyProtocolV2 || mode == config.ProxyProtocolAny,
			From:    l.cfg.ProxyProtocolPrefixes(),
			Timeout: l.cfg.ProxyProtocolTimeout,
			// Connections waiting for their header count against the same budget as served
			// ones would.
			MaxPending: l.srv.Concurrency,
			OnRefused: func(peer net.Addr, err error) {
				e.framing.Add(1)
				e.log.Debug().Str("listener", l.cfg.Address).Stringer("peer", peer).Err(err).Msg("connection refused")
			},
		})
	}
	if l.certs != nil {
		return edge.GuardTLS(e.parked(tls.NewListener(ln, e.tlsConfig(l))))
	}
	return e.parked(edge.GuardPlain(e.h2.listener(ln, l)))
}

// tlsConfig is listener l's TLS settings: certificates chosen by SNI from its CertStore, TLS
// 1.2 at least, and ALPN offering h2 and HTTP/1.1 as the listener speaks them.
func (e *Engine) tlsConfig(l *listener) *tls.Config {
	c := l.certs.TLSConfig()
	if !l.cfg.Speaks(config.ProtocolHTTP1) {
		// The ACME validation protocol, if any, stays.
		c.NextProtos = slices.DeleteFunc(c.NextProtos, func(p string) bool { return p == "http/1.1" })
	}
	if l.h2() && e.h2 != nil {
		// h2 first: ALPN picks the server's first protocol the client offers.
		c.NextProtos = append([]string{http2.NextProtoTLS}, c.NextProtos...)
	}
	return c
}

func (l *listener) serve(ln net.Listener) error {
	// ln is bound, so the listener is reachable from here on: readiness may say so.
	l.serving.Store(true)
	defer l.serving.Store(false)
	if err := l.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// shutdownListeners drains every listener's server at once, so the drain takes as long as
// the slowest, not the sum.
func (e *Engine) shutdownListeners(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(e.listeners))
	for i, l := range e.listeners {
		wg.Go(func() {
			if err := l.srv.ShutdownWithContext(ctx); err != nil {
				errs[i] = fmt.Errorf("drain connections of %s: %w", l.cfg.Address, err)
			}
		})
	}
	wg.Wait()
	// A listener bound but never served is closed here; fasthttp closes those it serves.
	e.closeListeners()
	for _, l := range e.listeners {
		closeFilter(l.redirect)
	}
	return errors.Join(errs...)
}

var errMisdirected = errors.New("host not covered by the certificate of the connection's sni name (tls.strict_sni_host)")

// misdirected reports a TLS request whose Host its connection's certificate does not cover
// (edge.CertStore.Misdirected). Reading the connection state costs one small allocation per
// TLS request; the handshake and encryption cost far more.
func (l *listener) misdirected(rc *fasthttp.RequestCtx) bool {
	st := rc.TLSConnectionState()
	return st != nil && l.certs.Misdirected(st.ServerName, rc.Request.Header.Host(), l.sniAlways)
}
