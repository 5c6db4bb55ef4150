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
