"""One node contract for every strategy of the runtime host: the same cases against a Python
plugin, a wasm module and a jar, so the engine never sees the type.

Each strategy supplies its samples in the same roles (echo, a typed error, one that never
answers in time, one that kills what it runs on, one that cannot load); what differs between
strategies is only said in STRATEGIES (what each sample answers, how each says it ran late).
A wasm module has no crash role: it cannot end the process it runs in (a trap is an error the
module answers, tested in test_wasm_host.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_jvm_host import jvm_running
from tests.integration.test_runtime_host import MARGIN, SAMPLES, Host, running, sample
from tests.integration.test_wasm_host import wasm_plugin

Starter = Callable[[Path], contextlib.AbstractContextManager[Host]]


def _python(name: str, **changes: Any) -> Starter:
    return lambda folder: running(folder, sample(name, **changes), SAMPLES / name)


def _python_broken(folder: Path) -> contextlib.AbstractContextManager[Host]:
    (folder / "plugin").mkdir()
    (folder / "plugin" / "echo_plugin.py").write_text("raise RuntimeError('broken on purpose')\n")
    return running(folder, sample("echo"), folder / "plugin")


def _wasm(name: str, module: bytes | None = None) -> Starter:
    def start(folder: Path) -> contextlib.AbstractContextManager[Host]:
        return running(folder, *wasm_plugin(folder, name, module))

    return start


def _jvm(name: str, **options: Any) -> Starter:
    return lambda folder: jvm_running(folder, name, **options)


def _echoed(output: Any) -> bool:
    """The wasm and JVM echoes answer the request they were given."""
    return bool(output == {"inputs": {"text": "hello"}, "properties": {}})


@dataclass(frozen=True)
class Strategy:
    roles: Mapping[str, Starter]
    echoed: Callable[[Any], bool]
    """Whether the echo's output for the text "hello" is right."""
    fail: tuple[dict[str, Any], dict[str, Any]]
    """The inputs and properties that make the failing sample answer a NetworkError."""
    late: tuple[dict[str, Any], str]
    """The inputs that make the late sample miss its 1 s timeout, and what its Timeout says."""
    broken: str
    """What the reason of the sample that cannot load says."""
    crashed: tuple[str, str] | None = None
    """The error type and metrics outcome of a crash, for a strategy that can crash."""


STRATEGIES = {
    "python": Strategy(
        roles={
            "echo": _python("echo"),
            "fail": _python("failing"),
            "late": _python("slow", resourceProfile={"timeout": 1000}),
            "crash": _python("crasher"),
            "broken": _python_broken,
        },
        echoed=lambda output: output["text"] == "HELLO!",
        fail=({"reason": "quota"}, {"errorType": "NetworkError"}),
        late=({"seconds": 30}, "did not answer within its timeout of 1000 ms"),
        broken="RuntimeError: broken on purpose",
        crashed=("UnknownError", "crash"),
    ),
    "wasm": Strategy(
        roles={
            "echo": _wasm("echo"),
            "fail": _wasm("fail"),
            "late": _wasm("spin"),
            "broken": _wasm("echo", b"\x00asm\x01\x00\x00\x00\xff"),
        },
        echoed=_echoed,
        fail=({"reason": "quota"}, {}),
        late=({"text": "x"}, "the wasm module ran past its 1s deadline"),
        broken="the plugin does not load: WasmtimeError",
    ),
    "jvm": Strategy(
        roles={
            "echo": _jvm("echo"),
            "fail": _jvm("fail"),
            "late": _jvm("spin"),
            "crash": _jvm("crash"),
            "broken": _jvm("echo", entrypoint="io.wayang.samples.echo.Missing"),
        },
        echoed=_echoed,
        fail=({"reason": "quota"}, {}),
        late=({"text": "sleep"}, "the plugin ran past its 900 ms deadline"),
        broken="the class io.wayang.samples.echo.Missing is not in the plugin's jar",
        crashed=("ToolError", "error"),
    ),
}
CRASHING = [name for name, strategy in STRATEGIES.items() if strategy.crashed is not None]


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str, str], Host]]:
    """A host per strategy and role, started on first use and kept for the module."""
    started: dict[tuple[str, str], Host] = {}
    with contextlib.ExitStack() as stack:

        def host(strategy: str, role: str) -> Host:
            if (strategy, role) not in started:
                folder = tmp_path_factory.mktemp(f"{strategy}-{role}")
                started[strategy, role] = stack.enter_context(
                    STRATEGIES[strategy].roles[role](folder)
                )
            return started[strategy, role]

        yield host


def ready(launch: Callable[[str, str], Host], strategy: str, role: str) -> Host:
    host = launch(strategy, role)
    host.wait_ready()
    return host


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_answer_comes_on_the_success_port(launch: Any, strategy: str) -> None:
    status, answer = ready(launch, strategy, "echo").execute({"text": "hello"})
    assert (status, answer["port"]) == (200, "echoed")
    assert STRATEGIES[strategy].echoed(answer["output"]), answer


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_schema_violation_names_the_field_before_the_plugin_runs(
    launch: Any, strategy: str
) -> None:
    status, answer = ready(launch, strategy, "echo").execute({"text": "x" * 1001})
    assert (status, answer["port"]) == (200, "error")
    assert answer["error"]["type"] == "ValidationError"
    assert answer["error"]["details"]["field"] == "inputs.text"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_typed_error_from_the_plugin_keeps_its_type_action_and_details(
    launch: Any, strategy: str
) -> None:
    inputs, properties = STRATEGIES[strategy].fail
    status, answer = ready(launch, strategy, "fail").execute(inputs, properties)
    assert (status, answer["port"]) == (200, "error")
    error = answer["error"]
    assert (error["type"], error["retryable"], error["suggestedAction"]) == (
        "NetworkError",
        True,
        "retry",
    )
    assert error["message"] == "failing on purpose as NetworkError: quota"
    assert error["details"]["reason"] == "quota"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_probes_and_unknown_paths(launch: Any, strategy: str) -> None:
    echo = ready(launch, strategy, "echo")
    assert echo.get("/healthz") == (200, {"status": "ok"})
    assert echo.get("/readyz")[1]["status"] == "ready"
    assert echo.request("GET", "/nowhere")[0] == 404
    assert echo.request("POST", "/readyz", b"{}")[0] == 405


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_metrics_count_the_calls(launch: Any, strategy: str) -> None:
    echo = ready(launch, strategy, "echo")
    before = echo.metrics()
    echo.execute({"text": "count me"})
    echo.execute({"text": "x" * 1001})
    after = echo.metrics()
    for outcome in ("success", "invalid"):
        key = f'wayang_plugin_executions_total{{outcome="{outcome}"}}'
        assert after[key] == before[key] + 1
    assert after["wayang_plugin_ready"] == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_call_past_its_timeout_is_a_timeout_and_the_host_serves_on(
    launch: Any, strategy: str
) -> None:
    host = ready(launch, strategy, "late")
    inputs, message = STRATEGIES[strategy].late
    for _ in range(2):
        started = time.monotonic()
        status, answer = host.execute(inputs)
        assert time.monotonic() - started < 1.0 + MARGIN
        assert (status, answer["port"]) == (200, "error")
        error = answer["error"]
        assert (error["type"], error["retryable"]) == ("Timeout", True)
        assert message in error["message"], error["message"]
        assert host.get("/readyz")[0] == 200


@pytest.mark.parametrize("strategy", CRASHING)
def test_a_crash_is_an_error_and_a_new_worker_serves_on(launch: Any, strategy: str) -> None:
    host = ready(launch, strategy, "crash")
    kind, outcome = STRATEGIES[strategy].crashed or ("", "")
    before = host.metrics()
    for _ in range(2):
        status, answer = host.execute({"crash": True})
        assert (status, answer["port"]) == (200, "error")
        error = answer["error"]
        assert (error["type"], error["retryable"]) == (kind, True)
        assert "exit code 3" in error["message"], error["message"]
        status, answer = host.execute({"crash": False})
        assert (status, answer["port"], answer["output"]) == (200, "result", {"survived": True})
    after = host.metrics()
    key = f'wayang_plugin_executions_total{{outcome="{outcome}"}}'
    assert after[key] == before[key] + 2
    started = "wayang_plugin_workers_started_total"
    assert after[started] >= before[started] + 2
    assert host.get("/readyz")[0] == 200


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_plugin_that_cannot_load_keeps_the_host_up_and_unready(
    launch: Any, strategy: str
) -> None:
    host = launch(strategy, "broken")
    body = host.wait_ready(503)
    assert STRATEGIES[strategy].broken in body["reason"], body
    assert host.get("/healthz") == (200, {"status": "ok"})
    status, answer = host.execute({"text": "a"})
    assert status == 503
    assert answer["error"]["type"] == "PluginLoadError"
    assert host.metrics()["wayang_plugin_ready"] == 0
