;; The wasm echo sample: answers {"output": <the request>}, the request being the host's
;; {"inputs": ..., "properties": ...}: the success port's value is what the module was given. Built from this source by runtime-images/build.py
;; (wasmtime's wat2wasm); the ABI is docs/artifacts.md's.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "{\"output\":")
  (data (i32.const 64) "}")
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    ;; grow to fit (a failed grow leaves the write out of bounds: the call traps)
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow
        (i32.add (i32.div_u (i32.sub (global.get $heap)
                                     (i32.mul (memory.size) (i32.const 65536)))
                            (i32.const 65536))
                 (i32.const 1))))))
    (local.get $at))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $alloc (i32.add (local.get $len) (i32.const 11))))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 10))
    (memory.copy (i32.add (local.get $out) (i32.const 10)) (local.get $ptr) (local.get $len))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 10)) (local.get $len))
                 (i32.const 64) (i32.const 1))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $len) (i32.const 11))))))
