;; A proxy-wasm v0.2.1 filter that decides each request from an HTTP callout: it pauses the
;; request, calls upstream "auth" (GET /check), and when the answer comes:
;;   2xx     -> sets the request's x-auth-user to the answer's x-user header and resumes;
;;   other   -> answers 403 itself with the callout's body;
;;   failed  -> answers 503 "callout failed".
;; proxy_http_call refused (an upstream not in the config) -> 500 "call refused".
;; The callout's answer arrives on the root context; the guest makes the request's context
;; effective again (the HTTP context id is remembered per callout token at 4096 + 4*(token%256)).
(module
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 1024) "auth")
  ;; The callout's headers: :method GET, :path /check, :authority auth.local (75 bytes).
  (data (i32.const 1100) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\0a\00\00\00:method\00GET\00:path\00/check\00:authority\00auth.local\00")
  (data (i32.const 1200) ":status")
  (data (i32.const 1210) "x-user")
  (data (i32.const 1220) "x-auth-user")
  (data (i32.const 1240) "call refused")
  (data (i32.const 1260) "callout failed")
  ;; 1300: returned pointer, 1304: returned size, 1308: callout token.
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072))
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $slot (param $token i32) (result i32)
    (i32.add (i32.const 4096) (i32.shl (i32.and (local.get $token) (i32.const 255)) (i32.const 2))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (call $http_call (i32.const 1024) (i32.const 4) (i32.const 1100) (i32.const 75)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 2000) (i32.const 1308))
      (then
        (drop (call $reply (i32.const 500) (i32.const 0) (i32.const 0) (i32.const 1240) (i32.const 12)
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (i32.store (call $slot (i32.load (i32.const 1308))) (local.get $ctx))
    (i32.const 1)) ;; paused until the answer
  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param $headers i32) (param $size i32) (param i32)
    (drop (call $effective (i32.load (call $slot (local.get $token)))))
    (if (i32.eqz (local.get $headers))
      (then
        (drop (call $reply (i32.const 503) (i32.const 0) (i32.const 0) (i32.const 1260) (i32.const 14)
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return)))
    (drop (call $get (i32.const 6) (i32.const 1200) (i32.const 7) (i32.const 1300) (i32.const 1304)))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 1300))) (i32.const 50)) ;; '2'
      (then
        (if (i32.eqz (call $get (i32.const 6) (i32.const 1210) (i32.const 6) (i32.const 1300) (i32.const 1304)))
          (then
            (drop (call $set (i32.const 0) (i32.const 1220) (i32.const 11)
              (i32.load (i32.const 1300)) (i32.load (i32.const 1304))))))
        (drop (call $continue (i32.const 0)))
        (return)))
    (i32.store (i32.const 1300) (i32.const 0))
    (i32.store (i32.const 1304) (i32.const 0))
    (drop (call $buf (i32.const 4) (i32.const 0) (local.get $size) (i32.const 1300) (i32.const 1304)))
    (drop (call $reply (i32.const 403) (i32.const 0) (i32.const 0) (i32.load (i32.const 1300)) (i32.load (i32.const 1304))
      (i32.const 0) (i32.const 0) (i32.const -1))))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
