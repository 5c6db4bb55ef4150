package wasmtest

// Hello returns the bundled demo plugin (config/plugins/hello.wasm), an http-wasm guest that
// shows both phases and the config hand-off. In WebAssembly text it is:
//
//	(module
//	  (import "http_handler" "enable_features" (func $enable_features (param i32) (result i32)))
//	  (import "http_handler" "add_header_value" (func $add_header_value (param i32 i32 i32 i32 i32)))
//	  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
//	  (import "http_handler" "get_config" (func $get_config (param i32 i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 0) "X-Wasm")        (data (i32.const 16) "hello from a WebAssembly plugin")
//	  (data (i32.const 64) "X-Plugin-Config")
//	  (func (export "handle_request") (result i64)
//	    (drop (call $enable_features (i32.const 2)))                 ;; buffer_response
//	    (call $add_header_value (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 16) (i32.const 31))
//	    (i64.const 1))                                               ;; next
//	  (func (export "handle_response") (param i32 i32) (local $n i32)
//	    (local.set $n (call $get_config (i32.const 256) (i32.const 1024)))
//	    (if (i32.le_u (local.get $n) (i32.const 1024))             ;; written only when it fits
//	      (then (call $set_header_value (i32.const 1) (i32.const 64) (i32.const 15)
//	                                    (i32.const 256) (local.get $n))))))
//
// It is generated rather than compiled from text so that `make run` needs nothing but Go; a
// test keeps the committed file equal to this function's output.
func Hello() []byte {
	g := Guest{
		Imports: []string{"enable_features", "add_header_value", "set_header_value", "get_config"},
		Data: []Data{
			{Offset: 0, Bytes: []byte("X-Wasm")},
			{Offset: 16, Bytes: []byte("hello from a WebAssembly plugin")},
			{Offset: 64, Bytes: []byte("X-Plugin-Config")},
		},
	}
	g.HandleRequest = NewCode().
		I32(2).Call(g.Fn("enable_features")).Drop().
		I32(0).I32(0).I32(6).I32(16).I32(31).Call(g.Fn("add_header_value")).
		I64(1)
	// Locals are numbered after the two parameters: $n is local 2.
	g.HandleResponse = NewCode().
		I32(256).I32(1024).Call(g.Fn("get_config")).LocalSet(2).
		Block().
		LocalGet(2).I32(1024).Raw(0x4b). // i32.gt_u
		BrIf(0).
		I32(1).I32(64).I32(15).I32(256).LocalGet(2).Call(g.Fn("set_header_value")).
		End()
	m := g.Module()
	m.Funcs[1].Locals = []byte{I32}
	return m.Encode()
}
