// Package proxy is the terminal step of a route: it checks and cleans what arrives at the edge and
// forwards the request to an upstream.
//
// The engine calls, in order: CheckFraming (reject requests whose message framing two HTTP
// parsers could read differently), Sanitize (strip hop-by-hop fields and untrusted
// X-Forwarded-*), the route's filters, and finally Upstream.Forward or Echo.
//
// fasthttp already refuses many malformed requests by itself (duplicate Content-Length,
// non-numeric Content-Length, duplicate Transfer-Encoding, Transfer-Encoding on HTTP/1.0, codings
// other than chunked or identity, a first header line starting with whitespace, invalid value
// bytes); those never reach CheckFraming and are answered with 400 by the server. What it
// tolerates and an edge proxy must not (Content-Length with Transfer-Encoding, "identity",
// obs-fold continuation lines, spaces inside field names, bare CR/LF, loose whitespace around
// framing values) is caught here from the raw header bytes.
package proxy
