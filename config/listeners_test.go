package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestListenForms: server.listen is one address (whose TLS is server.tls) or a list of
// addresses and listener mappings; both decode to the same list, with defaults applied.
func TestListenForms(t *testing.T) {
	tls := &ServerTLS{Certificates: []Certificate{{CertFile: "c.pem", KeyFile: "c.key"}}}
	tests := []struct {
		name, server string
		want         []Listener
	}{
		{"default", `{}`, []Listener{{Address: ":8080", Protocols: []string{"http1"}, ProxyProtocol: "off"}}},
		{"one address", `{ listen: "127.0.0.1:80" }`,
			[]Listener{{Address: "127.0.0.1:80", Protocols: []string{"http1"}, ProxyProtocol: "off"}}},
		{"one address takes server.tls", `{ listen: ":443", tls: { certificates: [ { cert_file: c.pem, key_file: c.key } ] } }`,
			[]Listener{{Address: ":443", TLS: tls, Protocols: []string{"http1", "h2"}, ProxyProtocol: "off"}}},
		{"defaults follow server.http2", `{ listen: [":80", { address: ":443", tls: { certificates: [ { cert_file: c.pem, key_file: c.key } ] } }], http2: { enabled: false, h2c: true } }`,
			[]Listener{{Address: ":80", Protocols: []string{"http1", "h2c"}, ProxyProtocol: "off"},
				{Address: ":443", TLS: tls, Protocols: []string{"http1"}, ProxyProtocol: "off"}}},
		{"list of addresses", `{ listen: [":80", ":81"] }`, []Listener{
			{Address: ":80", Protocols: []string{"http1"}, ProxyProtocol: "off"},
			{Address: ":81", Protocols: []string{"http1"}, ProxyProtocol: "off"}}},
		{"list of listeners", `
  listen:
    - { address: ":80", redirect_https: true, redirect_status: 301 }
    - address: ":443"
      tls: { certificates: [ { cert_file: c.pem, key_file: c.key } ] }
      proxy_protocol: v2
      proxy_protocol_from: [10.0.0.0/8]
    - { Address: ":8081", Protocols: [h2c], proxy_protocol: any, proxy_protocol_from: ["::1"], proxy_protocol_timeout: 2s }`,
			[]Listener{
				{Address: ":80", Protocols: []string{"http1"}, ProxyProtocol: "off", RedirectHTTPS: true, RedirectStatus: 301},
				{Address: ":443", TLS: tls, Protocols: []string{"http1", "h2"}, ProxyProtocol: "v2",
					ProxyProtocolFrom: []string{"10.0.0.0/8"}, ProxyProtocolTimeout: DefaultProxyProtocolTimeout},
				{Address: ":8081", Protocols: []string{"h2c"}, ProxyProtocol: "any", ProxyProtocolFrom: []string{"::1"},
					ProxyProtocolTimeout: 2 * time.Second},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, "server: "+tt.server+"\n"+minimal)
			if !reflect.DeepEqual(c.Server.Listen, tt.want) {
				t.Errorf("listen = %+v\nwant     %+v", c.Server.Listen, tt.want)
			}
		})
	}
}

// TestListenErrors: every mistake is reported with the listener's index, and its address when
// it has one, at the line it was written on.
func TestListenErrors(t *testing.T) {
	tests := []struct {
		name, server string
		want         []string // one entry per expected error
	}{
		{"scalar", `{ listen: 8080 }`, []string{`test.yaml:1: server.listen: expected "host:port" or a list of listeners, got 8080`,
			`server.listen: is empty`}},
		{"empty list", `{ listen: [] }`, []string{`server.listen: is empty; the proxy needs a listener`}},
		{"bad item", `{ listen: [":80", 5] }`, []string{`server.listen[1]: expected "host:port" or a listener mapping`}},
		{"unknown key", `{ listen: [ { address: ":80", proto: [h2c] } ] }`, []string{`server.listen[0]: unknown key "proto"`}},
		{"wrong type", `{ listen: [ { address: ":80", redirect_https: maybe } ] }`, []string{`server.listen[0].redirect_https: invalid boolean "maybe" (want true or false)`}},
		{"no address", `{ listen: [ { protocols: [http1] }, ":81" ] }`, []string{`server.listen[0].address: is empty`}},
		{"bad address", `{ listen: [":80", "81"] }`, []string{`server.listen[1].address: "81" is not host:port`}},
		{"same socket", `{ listen: [":80", "127.0.0.1:80"] }`,
			[]string{`server.listen[1].address: listener "127.0.0.1:80": overlaps server.listen[0] ":80"`}},
		{"admin overlaps second", `{ listen: [":80", ":9901"], admin: "127.0.0.1:9901" }`,
			[]string{`server.admin: "127.0.0.1:9901" overlaps server.listen ":9901"`}},
		{"server.tls with a list", `{ listen: [":443"], tls: { certificates: [ { cert_file: c, key_file: k } ] } }`,
			[]string{`server.tls: applies to a single-address server.listen only`, `server.listen[0].protocols`}[:1]},
		{"listener tls checked", `{ listen: [ { address: ":443", tls: { strict_sni_host: on } } ] }`,
			[]string{`server.listen[0].tls.certificates: is empty`, `server.listen[0].tls.strict_sni_host: "on" is not one of`}},
		{"unknown protocol", `{ listen: [ { address: ":80", protocols: [http1, http3] } ] }`,
			[]string{`server.listen[0].protocols[1]: listener ":80": unknown protocol "http3"`}},
		{"protocol twice", `{ listen: [ { address: ":80", protocols: [http1, http1] } ] }`,
			[]string{`server.listen[0].protocols[1]: listener ":80": "http1" is listed twice`}},
		{"no protocols", `{ listen: [ { address: ":80", protocols: [] } ] }`, []string{`server.listen[0].protocols: listener ":80": is empty`}},
		{"h2 without tls", `{ listen: [ { address: ":80", protocols: [h2] } ] }`,
			[]string{`server.listen[0].protocols[0]: listener ":80": h2 needs tls on this listener`}},
		{"h2c with tls", `{ listen: [ { address: ":443", protocols: [h2c], tls: { certificates: [ { cert_file: c, key_file: k } ] } } ] }`,
			[]string{`server.listen[0].protocols[0]: listener ":443": h2c is HTTP/2 over plain TCP`}},
		{"h2 on single address without tls", `{ listen: ":80" }`, nil},
		{"proxy protocol mode", `{ listen: [ { address: ":80", proxy_protocol: v3 } ] }`,
			[]string{`server.listen[0].proxy_protocol: listener ":80": "v3" is not one of off, v1, v2, any`}},
		{"proxy protocol from missing", `{ listen: [ { address: ":80", proxy_protocol: v1 } ] }`,
			[]string{`server.listen[0].proxy_protocol_from: listener ":80": is empty`}},
		{"proxy protocol from bad", `{ listen: [ { address: ":80", proxy_protocol: any, proxy_protocol_from: [lb.internal] } ] }`,
			[]string{`server.listen[0].proxy_protocol_from[0]: listener ":80": "lb.internal" is not an IP address or CIDR`}},
		{"proxy protocol from without mode", `{ listen: [ { address: ":80", proxy_protocol_from: [10.0.0.1] } ] }`,
			[]string{`server.listen[0].proxy_protocol_from: listener ":80": is for a listener with proxy_protocol`}},
		{"proxy protocol timeout", `{ listen: [ { address: ":80", proxy_protocol: v2, proxy_protocol_from: [10.0.0.1], proxy_protocol_timeout: -1s } ] }`,
			[]string{`server.listen[0].proxy_protocol_timeout: listener ":80": is -1s`}},
		{"redirect without tls listener", `{ listen: [ { address: ":80", redirect_https: true } ] }`,
			[]string{`server.listen[0].redirect_https: listener ":80": needs a listener with tls`}},
		{"redirect on tls listener", `{ listen: [ { address: ":443", redirect_https: true, tls: { certificates: [ { cert_file: c, key_file: k } ] } } ] }`,
			[]string{`server.listen[0].redirect_https: listener ":443": is for a plain listener`}},
		{"redirect status", `{ listen: [ { address: ":80", redirect_https: true, redirect_status: 303 }, { address: ":443", tls: { certificates: [ { cert_file: c, key_file: k } ] } } ] }`,
			[]string{`server.listen[0].redirect_status: listener ":80": 303 is not one of 301, 302, 307, 308`}},
		{"redirect status alone", `{ listen: [ { address: ":80", redirect_status: 301 } ] }`,
			[]string{`server.listen[0].redirect_status: listener ":80": is for redirect_https: true`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte("server: "+tt.server+"\n"+minimal))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			got := Errors(err)
			if len(got) != len(tt.want) {
				t.Errorf("%d errors, want %d:\n%v", len(got), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestListenersFoldsServerTLS: a config built in code with one listener and server.tls serves
// TLS on that listener, as the file form does.
func TestListenersFoldsServerTLS(t *testing.T) {
	tls := &ServerTLS{Certificates: []Certificate{{CertFile: "c", KeyFile: "k"}}}
	s := Server{Listen: []Listener{{Address: ":443"}}, TLS: tls, HTTP2: HTTP2{Enabled: true}}
	got := s.Listeners()
	if got[0].TLS != tls || s.Listen[0].TLS != nil || s.Listen[0].Protocols != nil {
		t.Errorf("Listeners() = %+v; Listen changed: %+v", got, s.Listen[0])
	}
	for p, want := range map[string]bool{ProtocolHTTP1: true, ProtocolH2: true, ProtocolH2C: false} {
		if got[0].Speaks(p) != want {
			t.Errorf("default tls listener speaks %s = %v, want %v", p, !want, want)
		}
	}
}
