// Package weir is the Weir plugin SDK for stock Go (GOOS=wasip1 GOARCH=wasm, no TinyGo): the
// http-wasm handler ABI behind an API shaped like net/http.
//
// A plugin is a main package that registers its Handler from init and is built as a WASI
// reactor:
//
//	package main
//
//	import weir "github.com/weir-gateway/weir/sdk/go"
//
//	func init() {
//		weir.HandleFunc(func(req weir.Request, resp weir.Response) (next bool, reqCtx uint32) {
//			req.Header().Set("X-Hello", "world")
//			return true, 0
//		})
//	}
//
//	func main() {} // never runs: the host calls _initialize (package init), then the handlers
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// One instance of a module serves one request at a time, so handlers need no locks; package
// state survives between requests of an instance but is lost whenever the host discards the
// instance (after a trap, a timeout, or a reload).
//
// Memory rules (sdk/ABI.md): every buffer belongs to the plugin. The host writes into a buffer
// only when the whole value fits and otherwise returns the size it needs; the getters here read
// into a reusable scratch buffer and retry once with exactly that size. Setters pass Go strings
// to the host without copying and allocate nothing.
package weir
