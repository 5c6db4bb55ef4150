;; memory-bomb: grows memory a page at a time until the host's memory_mb cap refuses
;; (memory.grow returns -1), then traps as an allocator out of memory would.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)
  (func (export "handle_response") (param i32 i32)))
