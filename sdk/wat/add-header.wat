;; add-header: sets X-Wasm: wat on the request and X-Wasm-Plugin: wat-add-header on the
;; response; the smallest complete guest, written against sdk/ABI.md alone.
(module
  (import "http_handler" "enable_features" (func $enable_features (param i32) (result i32)))
  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 0) "X-Wasm")           ;; 6 bytes at 0
  (data (i32.const 8) "wat")              ;; 3 bytes at 8
  (data (i32.const 16) "X-Wasm-Plugin")   ;; 13 bytes at 16
  (data (i32.const 32) "wat-add-header")  ;; 14 bytes at 32
  ;; Once per instance: changing the response in handle_response needs buffer_response (2).
  (func (export "_initialize")
    (drop (call $enable_features (i32.const 2))))
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 8) (i32.const 3))
    (i64.const 1))                        ;; next = 1, req_ctx = 0
  (func (export "handle_response") (param $req_ctx i32) (param $is_error i32)
    (if (i32.eqz (local.get $is_error))
      (then (call $set_header_value (i32.const 1) (i32.const 16) (i32.const 13) (i32.const 32) (i32.const 14))))))
