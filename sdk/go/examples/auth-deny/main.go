// Command auth-deny answers 401 with a JSON body, without calling the upstream, unless the
// request carries "Authorization: Bearer letmein".
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o auth-deny.wasm .
package main

import weir "github.com/weir-gateway/weir/sdk/go"

func init() {
	weir.HandleFunc(func(req weir.Request, resp weir.Response) (bool, uint32) {
		if req.Header().Get("Authorization") == "Bearer letmein" {
			return true, 0
		}
		resp.SetStatusCode(401)
		resp.Header().Set("Content-Type", "application/json")
		resp.Header().Set("WWW-Authenticate", "Bearer")
		resp.Body().WriteString(`{"error":"unauthorized"}`)
		return false, 0
	})
}

func main() {}
