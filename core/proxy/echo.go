package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/core/filter"
)

// echoReply is what Echo answers. Field order is fixed so the output is stable for tests and docs.
type echoReply struct {
	Route    string      `json:"route"`
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	Query    string      `json:"query"`
	Headers  [][2]string `json:"headers"`
	BodySize int64       `json:"body_size"`
}

// Echo is the built-in demo upstream (kind "echo"): it answers 200 with a JSON description of
// the request as the gateway would have forwarded it, after every filter ran. It reads and counts
// the body without keeping it, so it works for uploads of any size. It is not a hot path.
func Echo(c *filter.Ctx) {
	c.Upstream = "echo"
	r := echoReply{
		Route:  c.Route,
		Method: string(c.Method()),
		Path:   string(c.URI().PathOriginal()),
		Query:  string(c.URI().QueryString()),
	}
	for k, v := range c.Request.Header.All() {
		r.Headers = append(r.Headers, [2]string{string(k), string(v)})
	}
	sort.SliceStable(r.Headers, func(i, j int) bool { return r.Headers[i][0] < r.Headers[j][0] })
	if s := c.RequestBodyStream(); s != nil {
		n, err := io.Copy(io.Discard, s)
		if err != nil {
			c.Response.SetConnectionClose()
			c.Fail(fasthttp.StatusBadRequest, fmt.Errorf("echo: read request body: %w", err))
			return
		}
		r.BodySize = n
	} else {
		r.BodySize = int64(len(c.Request.Body()))
	}
	b, err := json.Marshal(r)
	if err != nil {
		c.Fail(fasthttp.StatusInternalServerError, err)
		return
	}
	c.Response.Reset()
	c.SetStatusCode(fasthttp.StatusOK)
	c.SetContentType("application/json")
	c.Response.Header.Set("X-Upstream", "echo")
	c.Response.SetBodyRaw(append(b, '\n'))
}
