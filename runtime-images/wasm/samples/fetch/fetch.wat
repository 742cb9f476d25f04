;; The wasm fetch sample: GETs the URL of its `url` input through the host function
;; `wayang.http` (the only way out of a module: docs/artifacts.md) and answers
;; {"output": <the host's answer>}, i.e. {"status", "headers", "body"} or, without the
;; `network` capability, the host's {"error": ...}. Built from this source by
;; runtime-images/build.py (wasmtime's wat2wasm).
(module
  (import "wayang" "http" (func $http (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "{\"output\":")
  (data (i32.const 16) "}")
  (data (i32.const 32) "{\"method\":\"GET\",\"url\":\"")
  (data (i32.const 64) "\"}")
  (data (i32.const 96) "\"url\": \"")
  (func $alloc (export "alloc") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow
        (i32.add (i32.div_u (i32.sub (global.get $heap)
                                     (i32.mul (memory.size) (i32.const 65536)))
                            (i32.const 65536))
                 (i32.const 1))))))
    (local.get $at))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $at i32) (local $end i32) (local $url i32) (local $request i32) (local $size i32)
    (local $answer i64) (local $out i32) (local $alen i32)
    ;; find `"url": "` (8 bytes, compared as one i64) in the host's request JSON
    (local.set $at (local.get $ptr))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (block $found
      (loop $scan
        (br_if $found (i64.eq (i64.load (local.get $at)) (i64.load (i32.const 96))))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br_if $scan (i32.lt_u (i32.add (local.get $at) (i32.const 8)) (local.get $end)))
        (unreachable)))
    (local.set $url (i32.add (local.get $at) (i32.const 8)))
    ;; the URL runs to the next quote
    (local.set $at (local.get $url))
    (block $closed
      (loop $quote
        (br_if $closed (i32.eq (i32.load8_u (local.get $at)) (i32.const 34)))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br_if $quote (i32.lt_u (local.get $at) (local.get $end)))
        (unreachable)))
    ;; {"method":"GET","url":"<url>"}
    (local.set $size (i32.add (i32.sub (local.get $at) (local.get $url)) (i32.const 25)))
    (local.set $request (call $alloc (local.get $size)))
    (memory.copy (local.get $request) (i32.const 32) (i32.const 23))
    (memory.copy (i32.add (local.get $request) (i32.const 23)) (local.get $url)
                 (i32.sub (local.get $at) (local.get $url)))
    (memory.copy (i32.add (local.get $request) (i32.sub (local.get $size) (i32.const 2)))
                 (i32.const 64) (i32.const 2))
    (local.set $answer (call $http (local.get $request) (local.get $size)))
    ;; {"output":<answer>}
    (local.set $alen (i32.wrap_i64 (i64.and (local.get $answer) (i64.const 0xffffffff))))
    (local.set $out (call $alloc (i32.add (local.get $alen) (i32.const 11))))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 10))
    (memory.copy (i32.add (local.get $out) (i32.const 10))
                 (i32.wrap_i64 (i64.shr_u (local.get $answer) (i64.const 32))) (local.get $alen))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 10)) (local.get $alen))
                 (i32.const 16) (i32.const 1))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $alen) (i32.const 11))))))
