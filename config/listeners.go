package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Listener is one address the gateway accepts client connections on (server.listen). Every
// listener serves the same routes; what differs is how connections arrive: TLS or plain, the
// protocols spoken, a PROXY protocol header in front, or a redirect to HTTPS instead of routing.
type Listener struct {
	// Address is "host:port" or ":port" (all interfaces); port 0 picks a free port.
	Address string `mapstructure:"address" json:"address"`
	// TLS, when set, terminates TLS on this listener, with certificates chosen by SNI.
	TLS *ServerTLS `mapstructure:"tls" json:"tls,omitempty"`
	// Protocols are the HTTP versions accepted: ProtocolHTTP1, ProtocolH2 (over TLS, by ALPN)
	// and ProtocolH2C (HTTP/2 over plain TCP, prior knowledge). Unset in the file, it is http1,
	// with h2 on a TLS listener when server.http2.enabled and h2c on a plain one when
	// server.http2.h2c; server.http2 holds the HTTP/2 limits for every listener.
	Protocols []string `mapstructure:"protocols" json:"protocols"`
	// ProxyProtocol is ProxyProtocolOff (the default), or the PROXY protocol versions
	// accepted in front of every connection (v1, v2 or any), for a listener behind an L4 load
	// balancer: the client address is taken from the header, and a connection without a
	// valid one is refused.
	ProxyProtocol string `mapstructure:"proxy_protocol" json:"proxy_protocol,omitempty"`
	// ProxyProtocolFrom are the CIDRs (or addresses) of the balancers allowed to send PROXY
	// headers; a connection from any other peer is closed unread, since anyone who can send
	// the header chooses the client address every filter sees. Required with ProxyProtocol.
	ProxyProtocolFrom []string `mapstructure:"proxy_protocol_from" json:"proxy_protocol_from,omitempty"`
	// ProxyProtocolTimeout bounds the wait for the header; a connection that has not sent a
	// whole one by then is closed. Default DefaultProxyProtocolTimeout.
	ProxyProtocolTimeout time.Duration `mapstructure:"proxy_protocol_timeout" json:"proxy_protocol_timeout,omitempty"`
	// RedirectHTTPS answers every request on this plain listener with a redirect to the same
	// host, path and query over HTTPS, on the port of the first TLS listener (omitted when it
	// is 443). A request a trusted proxy marks as HTTPS (X-Forwarded-Proto) is routed instead.
	RedirectHTTPS bool `mapstructure:"redirect_https" json:"redirect_https,omitempty"`
	// RedirectStatus is the redirect's status: 308 (the default) or 301, which keep the
	// method only in practice (301 may turn a POST into a GET), 307, or 302.
	RedirectStatus int `mapstructure:"redirect_status" json:"redirect_status,omitempty"`
}

// Listener protocols.
const (
	ProtocolHTTP1 = "http1"
	ProtocolH2    = "h2"
	ProtocolH2C   = "h2c"
)

// PROXY protocol modes of Listener.ProxyProtocol.
const (
	ProxyProtocolOff = "off"
	ProxyProtocolV1  = "v1"
	ProxyProtocolV2  = "v2"
	ProxyProtocolAny = "any"
)

// DefaultProxyProtocolTimeout is how long a PROXY protocol header may take to arrive: a
// balancer sends it with the connection's first bytes.
const DefaultProxyProtocolTimeout = 5 * time.Second

// Speaks reports whether the listener accepts protocol p (one of the Protocol constants). A
// listener built in code without Protocols speaks http1 only.
func (l *Listener) Speaks(p string) bool {
	if len(l.Protocols) == 0 {
		return p == ProtocolHTTP1
	}
	return slices.Contains(l.Protocols, p)
}

// ProxyProtocolOn reports whether the listener expects a PROXY protocol header.
func (l *Listener) ProxyProtocolOn() bool {
	return l.ProxyProtocol != "" && l.ProxyProtocol != ProxyProtocolOff
}

// decodeListen reads server.listen: one address (the form every earlier config uses, whose
// TLS is server.tls) or a list whose items are addresses or listener mappings.
func decodeListen(p *problems, raw any, c *Config) {
	s := &c.Server
	var items []any
	single := false
	switch x := raw.(type) {
	case nil:
	case string:
		items, single = []any{x}, true
	case []any:
		items, c.listenList = x, true
	default:
		p.add("server.listen", "", "", fmt.Errorf(`expected "host:port" or a list of listeners, got %s`, yamlKind(raw)))
		return
	}
	for i, item := range items {
		path := listenerPath(i, single)
		var l Listener
		switch x := item.(type) {
		case string:
			l.Address = x
		case map[string]any:
			if err := decodeInto(x, &l, path); err != nil {
				p.addAll(err, "", "")
			}
		default:
			p.add(path, "", "", fmt.Errorf(`expected "host:port" or a listener mapping {address, tls, protocols, …}, got %s`, yamlKind(item)))
			continue
		}
		if l.Protocols == nil {
			l.Protocols = s.defaultProtocols(l.TLS != nil || (single && s.TLS != nil))
		}
		if l.ProxyProtocol == "" {
			l.ProxyProtocol = ProxyProtocolOff
		}
		if l.ProxyProtocolOn() && l.ProxyProtocolTimeout == 0 {
			l.ProxyProtocolTimeout = DefaultProxyProtocolTimeout
		}
		s.Listen = append(s.Listen, l)
	}
	if s.TLS != nil {
		if single {
			s.Listen[0].TLS = s.TLS
		} else {
			p.add("server.tls", "", "", errors.New("applies to a single-address server.listen only; with a list, give each listener its own tls"))
		}
	}
}

// listenerPath is the key path of listener i in error messages.
func listenerPath(i int, single bool) string {
	if single {
		return "server.listen"
	}
	return fmt.Sprintf("server.listen[%d]", i)
}

// validateListeners checks every listener and the listeners against each other and the
// admin listener. s.TLS is checked here too, as the TLS of the single-address form.
func validateListeners(p *problems, s *Server, list bool) {
	if len(s.Listen) == 0 {
		p.add("server.listen", "", "", errors.New("is empty; the proxy needs a listener"))
	}
	single := len(s.Listen) == 1 && !list
	anyTLS := false
	for i := range s.Listen {
		anyTLS = anyTLS || s.Listen[i].TLS != nil
	}
	for i := range s.Listen {
		l := &s.Listen[i]
		path := listenerPath(i, single)
		// Messages name the address too: a list is easier to find by address than by index.
		at := func(key string, err error) {
			if l.Address != "" && !single {
				err = fmt.Errorf("listener %q: %w", l.Address, err)
			}
			p.add(joinPath(path, key), "", "", err)
		}
		switch err := checkListen(l.Address); {
		case l.Address == "" && single:
			p.add(path, "", "", errors.New("is empty; the proxy needs a listener"))
		case l.Address == "":
			at("address", errors.New(`is empty; write "host:port" or ":port"`))
		case err != nil:
			// The message quotes the address already.
			key := "address"
			if single {
				key = ""
			}
			p.add(joinPath(path, key), "", "", err)
		default:
			for j := range i {
				if o := s.Listen[j].Address; checkListen(o) == nil && sameListener(o, l.Address) {
					at("address", fmt.Errorf("overlaps server.listen[%d] %q", j, o))
				}
			}
		}
		if l.TLS != nil && l.TLS != s.TLS {
			validateServerTLS(p, joinPath(path, "tls"), l.TLS)
		}
		validateProtocols(l, at)
		validateProxyProtocol(l, at)
		if l.RedirectHTTPS {
			switch {
			case l.TLS != nil:
				at("redirect_https", errors.New("is for a plain listener; this one serves TLS"))
			case !anyTLS:
				at("redirect_https", errors.New("needs a listener with tls to send clients to"))
			}
		}
		switch l.RedirectStatus {
		case 0:
		case 301, 302, 307, 308:
			if !l.RedirectHTTPS {
				at("redirect_status", errors.New("is for redirect_https: true"))
			}
		default:
			at("redirect_status", fmt.Errorf("%d is not one of 301, 302, 307, 308", l.RedirectStatus))
		}
	}
	if s.TLS != nil {
		validateServerTLS(p, "server.tls", s.TLS)
	}
}

func validateProtocols(l *Listener, at func(string, error)) {
	if l.Protocols != nil && len(l.Protocols) == 0 {
		at("protocols", fmt.Errorf("is empty; list one or more of %s, %s, %s", ProtocolHTTP1, ProtocolH2, ProtocolH2C))
	}
	for i, pr := range l.Protocols {
		key := "protocols[" + strconv.Itoa(i) + "]"
		switch {
		case pr != ProtocolHTTP1 && pr != ProtocolH2 && pr != ProtocolH2C:
			at(key, fmt.Errorf("unknown protocol %q (want %s, %s or %s)", pr, ProtocolHTTP1, ProtocolH2, ProtocolH2C))
		case slices.Index(l.Protocols, pr) < i:
			at(key, fmt.Errorf("%q is listed twice", pr))
		case pr == ProtocolH2 && l.TLS == nil:
			// Clients negotiate h2 by ALPN in the TLS handshake; on plain TCP it is h2c.
			at(key, errors.New(`h2 needs tls on this listener (HTTP/2 over plain TCP is "h2c")`))
		case pr == ProtocolH2C && l.TLS != nil:
			at(key, errors.New(`h2c is HTTP/2 over plain TCP; on a tls listener write "h2"`))
		}
	}
}

func validateProxyProtocol(l *Listener, at func(string, error)) {
	switch l.ProxyProtocol {
	case "", ProxyProtocolOff:
		if len(l.ProxyProtocolFrom) > 0 {
			at("proxy_protocol_from", errors.New("is for a listener with proxy_protocol: v1, v2 or any"))
		}
		return
	case ProxyProtocolV1, ProxyProtocolV2, ProxyProtocolAny:
	default:
		at("proxy_protocol", fmt.Errorf("%q is not one of off, v1, v2, any", l.ProxyProtocol))
		return
	}
	if len(l.ProxyProtocolFrom) == 0 {
		// Whoever can send the header chooses the client address that ip filters, rate limits
		// and X-Forwarded-For see; name the balancers ("0.0.0.0/0" and "::/0" allow anyone).
		at("proxy_protocol_from", errors.New("is empty; list the addresses or CIDRs of the load balancers that send PROXY headers"))
	}
	for i, cidr := range l.ProxyProtocolFrom {
		if _, err := parseProxy(cidr); err != nil {
			at("proxy_protocol_from["+strconv.Itoa(i)+"]", err)
		}
	}
	if l.ProxyProtocolTimeout < 0 {
		at("proxy_protocol_timeout", fmt.Errorf("is %s; it must not be negative", l.ProxyProtocolTimeout))
	}
}

// validateServerTLS checks one listener's TLS settings; path is where they are written.
func validateServerTLS(p *problems, path string, t *ServerTLS) {
	if len(t.Certificates) == 0 && t.ACME == nil {
		p.add(path+".certificates", "", "", fmt.Errorf("is empty; TLS needs at least one certificate, or %s.acme", path))
	}
	if t.ACME != nil {
		validateACME(p, path+".acme", t.ACME)
	}
	for i, c := range t.Certificates {
		if c.CertFile == "" || c.KeyFile == "" {
			p.add(fmt.Sprintf("%s.certificates[%d]", path, i), "", "", errors.New("needs both cert_file and key_file"))
		}
	}
	switch t.StrictSNIHost {
	case "", StrictSNIAuto, StrictSNIAlways, StrictSNINever:
	default:
		p.add(path+".strict_sni_host", "", "", fmt.Errorf("%q is not one of auto, always, never", t.StrictSNIHost))
	}
}

// defaultProtocols are the protocols of a listener that does not list them: http1, with h2
// on a TLS listener when server.http2.enabled, h2c on a plain one when server.http2.h2c.
func (s *Server) defaultProtocols(tls bool) []string {
	switch {
	case tls && s.HTTP2.Enabled:
		return []string{ProtocolHTTP1, ProtocolH2}
	case !tls && s.HTTP2.H2C:
		return []string{ProtocolHTTP1, ProtocolH2C}
	}
	return []string{ProtocolHTTP1}
}

// Listeners returns the listeners as they apply, also when the config was built or changed in
// code: with one listener, server.tls (when set) is its TLS, as in the file form, and a
// listener without protocols has the default ones.
func (s *Server) Listeners() []Listener {
	out := slices.Clone(s.Listen)
	for i := range out {
		if len(out) == 1 && s.TLS != nil {
			out[i].TLS = s.TLS
		}
		if len(out[i].Protocols) == 0 {
			out[i].Protocols = s.defaultProtocols(out[i].TLS != nil)
		}
	}
	return out
}

// ListenerPath names listener i in messages as the file wrote it: "server.listen" for a
// single address, "server.listen[i]" in a list.
func (c *Config) ListenerPath(i int) string {
	return listenerPath(i, len(c.Server.Listen) == 1 && !c.listenList)
}
