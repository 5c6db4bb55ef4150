// Command inspect answers every request itself with a plain-text report of what the host told
// it: method, URI, protocol, client address, config, the values of X-Multi, whether x-multi is
// among the header names, and the request body. It exercises every getter of the SDK.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o inspect.wasm .
package main

import (
	"io"
	"strings"

	weir "github.com/weir-gateway/weir/sdk/go"
)

func init() {
	weir.HandleFunc(func(req weir.Request, resp weir.Response) (bool, uint32) {
		listed := "no"
		for _, n := range req.Header().Names() {
			if n == "x-multi" {
				listed = "yes"
			}
		}
		body, _ := io.ReadAll(req.Body())
		lines := []string{
			"method=" + req.Method(),
			"uri=" + req.URI(),
			"protocol=" + req.ProtocolVersion(),
			"source=" + req.SourceAddr(),
			"config=" + string(weir.Config()),
			"multi=" + strings.Join(req.Header().Values("X-Multi"), ","),
			"listed=" + listed,
			"body=" + string(body),
		}
		weir.Log(weir.LevelInfo, "inspect: answered "+req.URI())
		resp.SetStatusCode(200)
		resp.Header().Set("Content-Type", "text/plain")
		// Line by line: every write after the first appends.
		for _, l := range lines {
			resp.Body().WriteString(l + "\n")
		}
		return false, 0
	})
}

func main() {}
