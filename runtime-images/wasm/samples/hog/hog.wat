;; Asks for 4096 more pages (256 MiB) and says whether it got them: {"output": {"grown": true}}
;; or false. Under a memory limit below that, `memory.grow` fails.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"output\":{\"grown\":true}}")
  (data (i32.const 64) "{\"output\":{\"grown\":false}}")
  (func (export "alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (if (result i64) (i32.eq (memory.grow (i32.const 4096)) (i32.const -1))
      (then (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 26)))
      (else (i64.const 25)))))
