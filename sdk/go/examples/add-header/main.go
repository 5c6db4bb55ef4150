// Command add-header tags every request with "X-Wasm: go" on its way upstream, and every
// response with "X-Wasm-Plugin: go-add-header" on its way back.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o add-header.wasm .
package main

import weir "github.com/weir-gateway/weir/sdk/go"

type addHeader struct{}

func (addHeader) HandleRequest(req weir.Request, _ weir.Response) (bool, uint32) {
	req.Header().Set("X-Wasm", "go")
	return true, 0
}

func (addHeader) HandleResponse(_ uint32, _ weir.Request, resp weir.Response, isError bool) {
	if !isError {
		resp.Header().Set("X-Wasm-Plugin", "go-add-header")
	}
}

func init() {
	// HandleResponse changes the response, which the ABI allows only with buffer_response.
	weir.EnableFeatures(weir.BufferResponse)
	weir.Handle(addHeader{})
}

func main() {}
