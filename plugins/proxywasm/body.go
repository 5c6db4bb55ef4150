package proxywasm

import (
	"errors"
	"fmt"
	"io"

	"github.com/tetratelabs/wazero/api"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/httpsyntax"
)

type apiFunction = api.Function

// Actions a callback returns. Headers callbacks of v0.1.0 may also answer
// ContinueAndEndStream (2), which continues; anything else pauses.
const (
	actionContinue              = 0
	headersContinueAndEndStream = 2
)

func strEqualFold(b []byte, s string) bool { return httpsyntax.EqualFold(b, s) }

// readRequestBody reads the whole request body (a streamed one into memory, so the upstream
// still gets it) within limit; over it, the request is answered 413.
func readRequestBody(req *fasthttp.Request, limit int) ([]byte, int, error) {
	if req.IsBodyStream() {
		if cl := req.Header.ContentLength(); cl > limit {
			return nil, fasthttp.StatusRequestEntityTooLarge, tooLarge("request", limit)
		}
		b, err := io.ReadAll(io.LimitReader(req.BodyStream(), int64(limit)+1))
		switch {
		case errors.Is(err, fasthttp.ErrBodyTooLarge):
			return nil, fasthttp.StatusRequestEntityTooLarge, err
		case err != nil:
			return nil, fasthttp.StatusBadRequest, fmt.Errorf("read request body: %w", err)
		case len(b) > limit:
			return nil, fasthttp.StatusRequestEntityTooLarge, tooLarge("request", limit)
		}
		req.SetBodyRaw(b)
	}
	b := req.Body()
	if len(b) > limit {
		return nil, fasthttp.StatusRequestEntityTooLarge, tooLarge("request", limit)
	}
	return b, 0, nil
}

// readResponseBody is readRequestBody for the upstream's response; over the limit the
// response cannot pass through the plugin (502). The trailers of a chunked body, which the
// proxy does not forward, become the response's trailers, sent on with its body.
func readResponseBody(resp *fasthttp.Response, limit int, chunked bool) ([]byte, error) {
	if resp.IsBodyStream() {
		if cl := resp.Header.ContentLength(); cl > limit {
			return nil, tooLarge("response", limit)
		}
		src := resp.BodyStream()
		b, err := io.ReadAll(io.LimitReader(src, int64(limit)+1))
		if err != nil {
			return nil, fmt.Errorf("read response body: %w", err)
		}
		if len(b) > limit {
			return nil, tooLarge("response", limit)
		}
		var trailers [][2][]byte
		if t, ok := src.(interface{ Trailers(func(k, v []byte)) }); ok && chunked {
			t.Trailers(func(k, v []byte) {
				trailers = append(trailers, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
			})
		}
		resp.SetBodyRaw(b) // closes the stream
		for _, kv := range trailers {
			if validField(kv[0], kv[1]) && !owned(kv[0]) {
				_ = addTrailer(&resp.Header, kv[0], kv[1], true)
			}
		}
	}
	b := resp.Body()
	if len(b) > limit {
		return nil, tooLarge("response", limit)
	}
	return b, nil
}

func tooLarge(what string, limit int) error {
	return fmt.Errorf("%s body over the plugin's max_body_bytes (%d)", what, limit)
}
