// Package edge is what happens to a request before it is routed: the checks and clean-up that
// make every later step (router, filters, plugins, the upstream) see one unambiguous request,
// and the listener's certificates.
//
// CertStore picks each TLS handshake's certificate by SNI from files, and from an AutoCerts
// source (core/acme) for the names the files do not cover; it staples OCSP responses to file
// certificates that name a responder.
//
// Before any request, GuardPlain makes a plain connection that does not start like an HTTP/1
// request (a TLS ClientHello sent to a plain listener) fail at once, so it is answered 400
// rather than held until the read timeout. GuardPlain, and GuardTLS on TLS listeners, then
// follow every request of the connection as it is read, along the boundaries fasthttp will
// find: a head line ending in a bare LF (fasthttp ends a head only at CRLFCRLF, and would
// wait for the read timeout) and chunk extensions over MaxChunkLine or MaxChunkExt (which
// fasthttp skips without a bound) fail the read, and are answered 400 with the connection
// closed, whichever request of the connection it is. What the scan does not fully understand
// (a CONNECT or Upgrade request, conflicting framing, Expect) ends it for the connection:
// it never fails what it is unsure of. Park keeps idle keep-alive connections without the
// server's buffers and goroutine (a few KiB each instead of about 20). SniffH2C hands a plain
// connection that opens with the HTTP/2 preface to the HTTP/2 server, and MeterH2 bounds the
// frames an HTTP/2 client may make that server answer (resets, pings, settings, CONTINUATION).
// A request served from an HTTP/2 stream reports a StreamConn as its connection; StreamOf
// gives a terminal step the stream itself.
//
// The engine calls, in order, for every request:
//
//   - CheckVersion refuses (505) every HTTP version but 1.0 and 1.1.
//   - CheckFraming refuses a request whose message framing two HTTP parsers could read
//     differently (httpsyntax.CheckHeaderSection on the raw header bytes), or with two Host
//     fields.
//   - Edge checks the method (an upper-case token), the request-target (origin-form or
//     absolute-form, no userinfo) and Host, and puts the path in its one normal form
//     (router.NormalizePath); what cannot be normalised without changing its meaning for
//     some upstream (an encoded "/" or "\", "%00") is refused.
//   - CertStore.Misdirected, on TLS listeners, refuses (421) a Host the connection's
//     certificate does not cover (server.tls.strict_sni_host).
//   - Sanitize strips hop-by-hop fields, every field Connection names, untrusted
//     X-Forwarded-* and the client-identity fields an untrusted peer may not set, and returns
//     the client's address as far as trusted proxies vouch for it.
//   - SetTarget writes the path the route matched back as the request-target, so the
//     router, filters, plugins, the upstream and the access log all see that one path.
//
// fasthttp already refuses many malformed requests by itself (duplicate Content-Length,
// non-numeric Content-Length, duplicate Transfer-Encoding, Transfer-Encoding on HTTP/1.0,
// codings other than chunked or identity, a first header line starting with whitespace,
// invalid value bytes); those never reach CheckFraming and are answered with 400 by the
// server. What it tolerates and an edge proxy must not (Content-Length with
// Transfer-Encoding, "identity", obs-fold continuation lines, spaces inside field names, bare
// CR/LF, loose whitespace around framing values) is caught here from the raw header bytes.
//
// Everything on the request path allocates nothing for a typical request.
package edge
