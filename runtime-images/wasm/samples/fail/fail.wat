;; Answers a typed error (the ABI's {"error": ...}): a retryable NetworkError with its reason
;; in the details, as the Python failing sample raises it with errorType NetworkError.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"error\":{\"type\":\"NetworkError\",\"message\":\"failing on purpose as NetworkError: quota\",\"retryable\":true,\"suggestedAction\":\"retry\",\"details\":{\"reason\":\"quota\"}}}")
  (func (export "alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (i64.const 159)))
