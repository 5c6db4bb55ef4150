;; huge-header: sets a 1 MiB header value, over the host's 64 KiB field limit; the host traps
;; rather than sending it.
(module
  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 17 17)
  (data (i32.const 0) "X-Huge")
  (func (export "handle_request") (result i64)
    (memory.fill (i32.const 64) (i32.const 0x61) (i32.const 0x100000)) ;; 1 MiB of 'a'
    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 64) (i32.const 0x100000))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32)))
