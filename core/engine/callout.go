package engine

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
	"github.com/weir-gateway/weir/core/proxy"
)

// Upstream makes the snapshot the filter.Upstreams of its filters' Env: a filter may send
// requests of its own (a plugin's HTTP callout) to the upstreams named in the config, and to
// nothing else.
func (s *snapshot) Upstream(name string) (filter.Caller, bool) {
	u, ok := s.upstreams[name]
	if !ok {
		return nil, false
	}
	return upstreamCaller{u}, true
}

// upstreamCaller forwards a standalone request through an upstream's pool, as a route does.
type upstreamCaller struct{ u *proxy.Upstream }

var errCalloutBody = errors.New("callout response body over the limit")

func (c upstreamCaller) Call(req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration, maxBody int) error {
	ru, err := c.u.Route(proxy.RouteOptions{RequestTimeout: &timeout})
	if err != nil {
		return err
	}
	// The callout runs as a request of its own: a context with no client, whose response is
	// the upstream's (or the error Forward records through Fail).
	rc := &fasthttp.RequestCtx{}
	rc.Init(req, nil, nil)
	fc := &filter.Ctx{}
	fc.Reset(rc, "")
	ru.Forward(fc)
	if err := fc.Err(); err != nil {
		return err
	}
	out := &rc.Response
	if out.IsBodyStream() {
		b, err := io.ReadAll(io.LimitReader(out.BodyStream(), int64(maxBody)+1))
		_ = out.CloseBodyStream() // returns the connection to the pool, or closes it
		if err != nil {
			return fmt.Errorf("read callout response body: %w", err)
		}
		out.SetBodyRaw(b)
	}
	if len(out.Body()) > maxBody {
		return fmt.Errorf("%w (%d bytes)", errCalloutBody, maxBody)
	}
	out.CopyTo(resp)
	return nil
}
