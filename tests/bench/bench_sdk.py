"""Benchmark: what the engine SDK (wayang_client) adds to a call.

One runtime host (runtime-images/python/host.py) serves the echo sample; the same process calls
it in interleaved rounds, two ways, sequentially over one keep-alive connection each:

- baseline: a raw HTTP call, the least any caller does: `http.client` POST /execute with the
  JSON body (inputs and a run id), the answer read and parsed;
- the same raw call with a `traceparent` header: what the header alone costs (the host parses
  every header; about 25 us here), so the SDK's own share can be read off;
- the SDK: `Client.call("echo", ...)`, with everything it does on a success: resolve the plugin,
  admit the call through its breaker, a run id and a W3C traceparent, the request with the
  attempt number, the answer decoded.

It prints p50 and p99 of each and the ratio (the aim: the SDK within 10% of the raw call).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from wayang_client import Client, PluginEntry, PluginIndex

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "runtime-images" / "python" / "samples" / "echo"
ROUNDS = 20
CALLS = 250
"""Per round and way: 5,000 calls each in all."""
WARMUP = 200


def start_host(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    out = folder / "stdout.log"
    env = {
        **os.environ,
        "WAYANG_DESCRIPTOR": str(SAMPLE / "plugin.json"),
        "WAYANG_PLUGIN_PATH": str(SAMPLE),
        "WAYANG_SCHEMA_DIR": str(ROOT / "schemas"),
        "WAYANG_BIND": "127.0.0.1",
        "PORT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "runtime-images" / "python" / "host.py")],
            env=env,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            record = json.loads(line)
            if record["event"] == "ready":
                port = next(
                    json.loads(x)["port"]
                    for x in out.read_text().splitlines()
                    if json.loads(x)["event"] == "listening"
                )
                return process, int(port)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the runtime host did not get ready")


def raw_caller(port: int, *, traced: bool = False) -> Callable[[], None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if traced:
        headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    def call() -> None:
        body = json.dumps({"inputs": {"text": "hi"}, "runId": str(uuid.uuid4())}).encode()
        connection.request("POST", "/execute", body, headers)
        answer = json.loads(connection.getresponse().read())
        if answer.get("port") != "echoed":
            raise RuntimeError(f"unexpected answer {answer}")

    return call


def sdk_caller(client: Client) -> Callable[[], None]:
    def call() -> None:
        result = client.call("echo", {"text": "hi"})
        if result.port != "echoed":
            raise RuntimeError(f"unexpected answer {result}")

    return call


def timed(call: Callable[[], None], times: int, into: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(times):
        started = clock()
        call()
        into.append(clock() - started)


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        process, port = start_host(Path(name))
        try:
            descriptor = json.loads((SAMPLE / "plugin.json").read_text())
            entry = PluginEntry.from_descriptor(descriptor, f"http://127.0.0.1:{port}")
            with Client(PluginIndex([entry])) as client:
                raw, traced = raw_caller(port), raw_caller(port, traced=True)
                sdk = sdk_caller(client)
                for warm in (raw, traced, sdk):
                    timed(warm, WARMUP, [])
                base: list[float] = []
                headed: list[float] = []
                ours: list[float] = []
                for _ in range(ROUNDS):
                    timed(raw, CALLS, base)
                    timed(traced, CALLS, headed)
                    timed(sdk, CALLS, ours)
        finally:
            process.terminate()
            process.wait(10)
    rows = [
        ("raw HTTP call (baseline)", base),
        ("raw call + traceparent", headed),
        ("wayang_client Client.call", ours),
    ]
    print(  # noqa: T201
        f"engine SDK overhead: echo on a local runtime host, {ROUNDS * CALLS} sequential calls "
        f"each, interleaved in {ROUNDS} rounds"
    )
    base50 = percentile(base, 0.5)
    for label, values in rows:
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(  # noqa: T201
            f"  {label:28} p50 {p50 * 1000:6.3f} ms   p99 {p99 * 1000:6.3f} ms   "
            f"x{p50 / base50:5.3f} of baseline (p50)"
        )
    overhead = percentile(ours, 0.5) - base50
    print(f"  SDK overhead per call (p50)  {overhead * 1e6:6.1f} us")  # noqa: T201


if __name__ == "__main__":
    main()
