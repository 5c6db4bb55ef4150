;; trap-request: traps in handle_request; the host answers per the plugin's fail policy.
(module
  (memory (export "memory") 1 1)
  (func (export "handle_request") (result i64) unreachable)
  (func (export "handle_response") (param i32 i32)))
