package edge

import (
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

// CheckFraming rejects a request whose framing is ambiguous, working on the header bytes exactly
// as they arrived (RawHeaders), because fasthttp has already normalized, folded or resolved much
// of what matters by the time the parsed header is visible. It allocates nothing on success.
//
// The framing fields are held to the form every mainstream client writes, "Name: value" with
// at most one space after the colon and nothing after the value: RFC 9110 allows more optional
// whitespace, but the extra forms are exactly the ones used to make two parsers disagree.
//
// A request with more than one Host field is refused as well (RFC 9112 section 3.2): fasthttp
// keeps one of them, and an upstream may read the other.
func CheckFraming(ctx *fasthttp.RequestCtx) error {
	hosts, err := httpsyntax.CheckHeaderSection(ctx.Request.Header.RawHeaders(), ctx.Request.Header.IsHTTP11())
	if err == nil && hosts > 1 {
		err = ErrDuplicateHost
	}
	return err
}

// ErrDuplicateHost refuses a request with more than one Host field.
var ErrDuplicateHost = errors.New("more than one host field")

// ErrVersion refuses a request whose HTTP version is neither 1.0 nor 1.1; it is answered with
// 505. fasthttp accepts any "HTTP/d.d" and serves it as HTTP/1.0, but a gateway that does not
// speak a version cannot know how such a message is framed, nor forward it as what it is.
var ErrVersion = errors.New("http version is neither 1.0 nor 1.1")

// CheckVersion refuses every HTTP version but 1.0 and 1.1 (RFC 9110 section 15.6.6). It
// allocates nothing.
func CheckVersion(h *fasthttp.RequestHeader) error {
	if h.IsHTTP11() || string(h.Protocol()) == "HTTP/1.0" {
		return nil
	}
	return ErrVersion
}
