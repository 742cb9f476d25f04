"""The Python runtime host (runtime-images/python/host.py) as a real process, on the samples.

Each test starts host.py with a sample's descriptor and module (no container): the echo plugin
answers on its success port; schema violations, exceptions, timeouts and crashed workers become
ErrorPayloads on the error port, and every ErrorPayload is checked against the schema and the
model. Broken plugins keep the host up (healthz 200) and not ready (readyz 503, with the reason).
The last test builds the images with runtime-images/build.py (mmdebstrap, network) twice, checks
that the digests agree, and, as root, runs the echo image's host in a chroot of its layers.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.errors import ErrorPayload, ErrorType, SuggestedAction
from wayang_operator.images.oci import manifest_digest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime-images"
HOST = RUNTIME / "python" / "host.py"
SAMPLES = RUNTIME / "python" / "samples"
SCHEMAS = ROOT / "schemas"
ERRORS = jsonschema.Draft202012Validator(
    json.loads((SCHEMAS / "ErrorPayload.schema.json").read_text()),
    format_checker=jsonschema.FormatChecker(),
)
SAMPLE_NAMES = ("echo", "failing", "slow", "crasher", "introspect", "flaky")
PLACEHOLDER = re.compile(r"^sha256:[0-9a-f]{64}$")
STARTUP = 15.0
MARGIN = 0.8
"""How late a Timeout may answer after the plugin's timeout."""


def checked(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """Every ErrorPayload the host sends must match the schema and the model."""
    if "error" in document:
        ERRORS.validate(document["error"])
        ErrorPayload.model_validate(document["error"])
    return document


@dataclass
class Host:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        status, body, _ = self.request("GET", path)
        return status, json.loads(body)

    def post(self, body: bytes) -> tuple[int, Mapping[str, Any]]:
        status, data, headers = self.request("POST", "/execute", body)
        assert headers["Content-Type"] == "application/json"
        return status, checked(json.loads(data))

    def execute(
        self, inputs: Mapping[str, Any], properties: Mapping[str, Any] | None = None, **extra: Any
    ) -> tuple[int, Mapping[str, Any]]:
        body: dict[str, Any] = {"inputs": dict(inputs), **extra}
        if properties is not None:
            body["properties"] = dict(properties)
        return self.post(json.dumps(body).encode())

    def metrics(self) -> dict[str, float]:
        status, body, headers = self.request("GET", "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines()]

    def wait_ready(self, want: int = 200) -> dict[str, Any]:
        """readyz once the host has finished starting (200, or 503 with a final reason)."""
        deadline = time.monotonic() + STARTUP
        while True:
            status, body = self.get("/readyz")
            if status == want and not str(body.get("reason", "")).startswith("starting"):
                return body
            assert time.monotonic() < deadline, f"readyz still {status} {body}"
            time.sleep(0.02)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in children.read_text().split():
                found |= {int(child)} | _descendants(int(child))
    return found


def _running(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


@contextlib.contextmanager
def running(
    folder: Path,
    descriptor: Mapping[str, Any] | None,
    plugin_path: Path,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = (sys.executable, str(HOST)),
    *,
    inherit: bool = True,
) -> Iterator[Host]:
    """host.py on a free port (it logs which) with `descriptor` written to folder/plugin.json;
    `env` last, over this environment (`inherit`) and the settings made here."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plugin.json"
    if descriptor is not None:
        path.write_text(json.dumps(descriptor))
    stdout, stderr = folder / "stdout.log", folder / "stderr.log"
    environment = {
        **(os.environ if inherit else {}),
        "WAYANG_DESCRIPTOR": str(path),
        "WAYANG_PLUGIN_PATH": str(plugin_path),
        "WAYANG_SCHEMA_DIR": str(SCHEMAS),
        "WAYANG_BIND": "127.0.0.1",
        "PORT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the samples folder
        **(env or {}),
    }
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(list(command), env=environment, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + STARTUP
        port = None
        while port is None:
            for line in stdout.read_text().splitlines():
                record = json.loads(line)
                if record["event"] == "listening":
                    port = int(record["port"])
            if port is None:
                assert process.poll() is None, f"host exited: {stderr.read_text()}"
                assert time.monotonic() < deadline, "host did not listen"
                time.sleep(0.02)
        yield Host(process, port, stdout, stderr)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def sample(name: str, **changes: Any) -> dict[str, Any]:
    descriptor: dict[str, Any] = json.loads((SAMPLES / name / "plugin.json").read_text())
    descriptor.update(changes)
    return descriptor


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Host]]:
    """One host per sample; slow gets the shortest timeout the schema allows (1000 ms)."""
    folder = tmp_path_factory.mktemp("hosts")
    descriptors = {
        "echo": sample("echo"),
        "echo-open": sample("echo", configuration={}),
        "failing": sample("failing"),
        "slow": sample("slow", resourceProfile={"timeout": 1000}),
        "crasher": sample("crasher"),
    }
    with contextlib.ExitStack() as stack:
        started = {
            name: stack.enter_context(
                running(folder / name, descriptor, SAMPLES / name.removesuffix("-open"))
            )
            for name, descriptor in descriptors.items()
        }
        for host in started.values():
            host.wait_ready()
        yield started


# ------------------------------------------------------------------------------------------------
# The samples


def valid_descriptor(descriptor: Mapping[str, Any]) -> PluginDescriptor:
    """A sample's descriptor, checked against the published schema and the model."""
    schema = json.loads((SCHEMAS / "PluginDescriptor.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
        descriptor
    )
    return PluginDescriptor.model_validate(descriptor)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_sample_descriptors_are_valid_plugin_descriptors(name: str) -> None:
    model = valid_descriptor(sample(name))
    assert model.implementation.type == "python"
    assert model.implementation.coordinate == f"wayang-samples-{name}"
    assert PLACEHOLDER.match(model.implementation.digest)
    assert model.implementation.entrypoint == f"{name}_plugin:execute"
    assert (SAMPLES / name / f"{name}_plugin.py").is_file()
    assert model.outputs.error.schema_ == "/schemas/ErrorPayload.schema.json"


# ------------------------------------------------------------------------------------------------
# Success


def test_echo_answers_on_its_success_port(hosts: dict[str, Host]) -> None:
    run_id = str(uuid.uuid4())
    status, answer = hosts["echo"].execute({"text": "hello"}, runId=run_id)
    assert status == 200
    assert answer["port"] == "echoed"
    assert answer["runId"] == run_id
    assert answer["output"]["text"] == "HELLO!", "configuration.suffix applies"
    assert answer["output"]["count"] >= 1
    status, answer = hosts["echo"].execute({"text": "hi"})
    assert uuid.UUID(answer["runId"]), "a run id is made when none is given"
    status, answer = hosts["echo"].execute({"text": "hi"}, {"suffix": "?"})
    assert (status, answer["port"]) == (200, "error"), "configuration wins over a call"
    assert answer["error"]["details"]["field"] == "properties.suffix"
    assert "set by the plugin's configuration" in answer["error"]["message"]


def test_a_configuration_value_comes_from_its_mounted_secret_and_is_never_shown(
    tmp_path: Path,
) -> None:
    """The operator mounts the Secret a configuration refers to; the host reads the value from
    there. A sensitive value is not in the descriptor, the logs or any error."""
    canary = "?!"
    secrets = tmp_path / "secrets"
    (secrets / "configuration" / "echo-secret").mkdir(parents=True)
    (secrets / "configuration" / "echo-secret" / "suffix").write_text(canary)
    descriptor = sample("echo")
    descriptor["properties"][0] |= {"sensitive": True, "default": None}
    descriptor["configuration"] = {
        "suffix": {"secretKeyRef": {"name": "echo-secret", "key": "suffix"}}
    }
    env = {"WAYANG_SECRETS_DIR": str(secrets)}
    with running(tmp_path / "host", descriptor, SAMPLES / "echo", env) as host:
        host.wait_ready()
        status, answer = host.execute({"text": "hi"})
        assert (status, answer["output"]["text"]) == (200, "HI" + canary)
        status, answer = host.execute({"text": "hi"}, {"suffix": "x"})
        assert answer["error"]["details"]["field"] == "properties.suffix"
        logged = host.stdout.read_text() + host.stderr.read_text()
    assert canary not in logged
    assert canary not in json.dumps(descriptor)
    missing = {"WAYANG_SECRETS_DIR": str(tmp_path / "nothing-mounted")}
    with running(tmp_path / "missing", descriptor, SAMPLES / "echo", missing) as host:
        reason = host.wait_ready(503)["reason"]
    assert "key 'suffix' of Secret 'echo-secret' is not mounted" in reason


def test_a_secret_edit_reaches_the_running_host_without_a_restart(tmp_path: Path) -> None:
    """Issue 16 item 1, the Secret half: the kubelet updates a mounted Secret in place (a new
    `..data` directory, swapped by a symlink); the host takes the new value up atomically. A key
    that disappears keeps the last good value serving, counted as a failed reload."""
    folder = tmp_path / "secrets" / "configuration" / "echo-secret"
    folder.mkdir(parents=True)

    def kubelet_writes(value: str, generation: int) -> None:
        data = folder / f"..{generation}"
        data.mkdir()
        (data / "suffix").write_text(value)
        link = folder / "..data_tmp"
        link.symlink_to(data.name)
        link.replace(folder / "..data")
        if not (folder / "suffix").is_symlink():
            (folder / "suffix").symlink_to("..data/suffix")

    kubelet_writes("!", 1)
    descriptor = sample("echo")
    descriptor["configuration"] = {
        "suffix": {"secretKeyRef": {"name": "echo-secret", "key": "suffix"}}
    }
    env = {"WAYANG_SECRETS_DIR": str(tmp_path / "secrets"), "WAYANG_SECRET_CHECK_SECONDS": "0.1"}
    with running(tmp_path / "host", descriptor, SAMPLES / "echo", env) as host:
        host.wait_ready()
        assert host.execute({"text": "hi"})[1]["output"]["text"] == "HI!"
        kubelet_writes("?", 2)
        deadline = time.monotonic() + 10
        while host.execute({"text": "hi"})[1]["output"]["text"] != "HI?":
            assert time.monotonic() < deadline, "the new value never came"
            time.sleep(0.05)
        assert host.metrics()['wayang_plugin_configuration_reloads_total{outcome="reloaded"}'] == 1
        (folder / "..data").unlink()
        deadline = time.monotonic() + 10
        while host.metrics()['wayang_plugin_configuration_reloads_total{outcome="failed"}'] < 1:
            assert time.monotonic() < deadline, "the broken Secret was never noticed"
            time.sleep(0.05)
        assert host.execute({"text": "hi"})[1]["output"]["text"] == "HI?", "the last good serves"
        assert host.get("/readyz")[0] == 200
    events = [record["event"] for record in host.logs()]
    assert {"configuration-reloaded", "configuration-reload-failed"} <= set(events)


def test_pooled_workers_keep_state_and_fresh_ones_do_not(tmp_path: Path) -> None:
    with running(tmp_path / "pool", sample("echo"), SAMPLES / "echo", {"WAYANG_WORKERS": "1"}) as h:
        counts = [h.execute({"text": "a"})[1]["output"]["count"] for _ in range(3)]
        assert counts == [1, 2, 3]
    fresh = {"WAYANG_REUSE_WORKERS": "false"}
    with running(tmp_path / "fresh", sample("echo"), SAMPLES / "echo", fresh) as h:
        counts = [h.execute({"text": "a"})[1]["output"]["count"] for _ in range(3)]
        assert counts == [1, 1, 1]


# ------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("inputs", "properties", "field", "keyword"),
    [
        ({"text": 42}, None, "inputs.text", "type"),
        ({}, None, "inputs.text", "required"),
        ({"text": "x" * 1001}, None, "inputs.text", "maxLength"),
        ({"text": "a", "bogus": 1}, None, "inputs.bogus", "required"),
        ({"text": "a"}, {"suffix": "much too long"}, "properties.suffix", "maxLength"),
        ({"text": "a"}, {"suffix": 7}, "properties.suffix", "type"),
        ({"text": "a"}, {"volume": 11}, "properties.volume", "required"),
    ],
)
def test_a_schema_violation_is_a_validation_error_naming_the_field(
    hosts: dict[str, Host],
    inputs: dict[str, Any],
    properties: dict[str, Any] | None,
    field: str,
    keyword: str,
) -> None:
    status, answer = hosts["echo-open"].execute(inputs, properties)
    assert (status, answer["port"]) == (200, "error")
    error = answer["error"]
    assert error["type"] == "ValidationError"
    assert error["retryable"] is False
    assert field in error["message"]
    assert error["details"]["field"] == field
    assert error["details"]["errors"][0]["keyword"] == keyword
    assert error["originNode"] == "io.wayang.samples/echo"
    assert error["originRunId"] == answer["runId"]


def test_a_propertys_cel_expression_is_checked_on_every_call(tmp_path: Path) -> None:
    """validation.celExpression, as the operator's Validated gate reads it (CEL over `self`),
    holds for the values calls pass too, not only for the configuration the operator saw."""
    echo = sample("echo", configuration={})
    echo["properties"][0]["validation"] = {"celExpression": "!self.contains('?')"}
    with running(tmp_path / "cel", echo, SAMPLES / "echo") as host:
        host.wait_ready()
        assert host.execute({"text": "a"}, {"suffix": "!"})[1]["output"]["text"] == "A!"
        status, answer = host.execute({"text": "a"}, {"suffix": "?!"})
        error = answer["error"]
        assert (status, answer["port"], error["type"]) == (200, "error", "ValidationError")
        assert error["details"]["field"] == "properties.suffix"
        assert error["details"]["errors"][0]["keyword"] == "celExpression"
        assert "fails validation.celExpression" in error["message"]
    broken = sample("echo")
    broken["properties"][0]["validation"] = {"celExpression": "self.size( >"}
    with running(tmp_path / "broken", broken, SAMPLES / "echo") as host:
        body = host.wait_ready(503)
        assert "properties[0].validation.celExpression does not compile" in body["reason"], body


def test_nested_fields_and_the_output_are_named_too(tmp_path: Path) -> None:
    descriptor = sample("echo")
    descriptor["inputs"].append(
        {
            "name": "payload",
            "required": False,
            "schema": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": {"type": "object", "required": ["name"]}}
                },
            },
        }
    )
    descriptor["outputs"]["success"]["schema"] = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 3}},
    }
    with running(tmp_path, descriptor, SAMPLES / "echo") as host:
        host.wait_ready()
        _, answer = host.execute({"text": "a", "payload": {"items": [{"name": "x"}, {}]}})
        assert answer["error"]["details"]["field"] == "inputs.payload.items[1].name"
        _, answer = host.execute({"text": "hello"})
        assert answer["port"] == "error"
        assert answer["error"]["type"] == "ValidationError"
        assert answer["error"]["details"] == {
            "stage": "output",
            "field": "output.text",
            "errors": [
                {"field": "output.text", "message": "'HELLO!' is too long", "keyword": "maxLength"}
            ],
        }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": []}', "inputs must be a JSON object"),
        (b'{"inputs": {}, "properties": 3}', "properties must be a JSON object"),
        (b'{"inputs": {}, "runId": "run-1"}', "runId must be a UUID"),
        (b'{"input": {"text": "a"}}', "unknown request field(s) input"),
    ],
)
def test_a_malformed_body_is_a_400(hosts: dict[str, Host], body: bytes, message: str) -> None:
    status, answer = hosts["echo"].post(body)
    assert status == 400
    assert message in answer["error"]["message"]
    assert answer["error"]["details"] == {"stage": "request"}


def test_unknown_paths_and_methods(hosts: dict[str, Host]) -> None:
    assert hosts["echo"].request("GET", "/nowhere")[0] == 404
    status, _, headers = hosts["echo"].request("GET", "/execute")
    assert (status, headers["Allow"]) == (405, "POST")
    assert hosts["echo"].request("POST", "/healthz", b"{}")[0] == 405


# ------------------------------------------------------------------------------------------------
# Failures of the plugin


def test_an_exception_is_a_tool_error(hosts: dict[str, Host]) -> None:
    run_id = str(uuid.uuid4())
    status, answer = hosts["failing"].execute({"reason": "testing"}, runId=run_id)
    assert (status, answer["port"]) == (200, "error")
    error = answer["error"]
    assert error["type"] == "ToolError"
    assert error["retryable"] is False
    assert error["details"]["exceptionType"] == "ValueError"
    assert error["details"]["exceptionMessage"] == "failing on purpose: testing"
    assert "ValueError: failing on purpose: testing" in error["message"]
    assert "failing_plugin.py" in error["stackTrace"]
    assert error["originRunId"] == run_id
    assert hosts["failing"].execute({})[1]["error"]["details"]["exceptionMessage"] == (
        "failing on purpose: no reason given"
    ), "the port's defaultValue applies"


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"errorType": "LLMError"}, ("LLMError", True, "retry")),
        ({"errorType": "NetworkError", "retryable": False}, ("NetworkError", False, "retry")),
        ({"errorType": "SecurityError"}, ("SecurityError", False, "escalate")),
        ({"errorType": "ValidationError", "suggestedAction": "human_review"},
         ("ValidationError", False, "human_review")),
    ],
)  # fmt: skip
def test_a_plugin_raises_any_error_type_with_its_own_retryable_and_action(
    hosts: dict[str, Host], properties: dict[str, Any], expected: tuple[str, bool, str]
) -> None:
    """The typed errors of lib/wayang_plugin.py reach the error port as the plugin chose them,
    with its details and the exception's class beside them."""
    status, answer = hosts["failing"].execute({"reason": "quota"}, properties)
    error = answer["error"]
    assert (status, answer["port"]) == (200, "error")
    assert (error["type"], error["retryable"], error.get("suggestedAction")) == expected
    assert error["message"] == f"failing on purpose as {properties['errorType']}: quota"
    assert error["details"]["reason"] == "quota", "the plugin's own details"
    assert error["details"]["exceptionType"] == properties["errorType"]
    assert ("maxAttempts" in error) is expected[1], "retryable errors carry the policy's attempts"


def test_the_plugin_api_offers_only_the_schemas_types_and_actions() -> None:
    spec = importlib.util.spec_from_file_location(
        "wayang_plugin", RUNTIME / "python" / "lib" / "wayang_plugin.py"
    )
    assert spec is not None
    assert spec.loader is not None
    api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api)
    base = api.PluginError
    classes = [v for v in vars(api).values() if isinstance(v, type)]
    errors: list[Any] = [v for v in classes if issubclass(v, base)]
    assert {error.error_type for error in errors} <= set(ErrorType)
    assert {e.suggested_action for e in errors} - {None} <= set(SuggestedAction)
    assert {"LLMError", "NetworkError", "SecurityError", "ValidationError", "ToolError"} <= {
        error.__name__ for error in errors
    }


def test_an_error_type_or_action_outside_the_schema_is_refused_as_a_tool_error(
    hosts: dict[str, Host],
) -> None:
    _, answer = hosts["failing"].execute({}, {"errorType": "MadeUpError"})
    error = answer["error"]
    assert (error["type"], error["details"]["refusedErrorType"]) == ("ToolError", "MadeUpError")
    assert "the plugin raised _ClaimedError" in error["message"]
    _, answer = hosts["failing"].execute({}, {"errorType": "LLMError", "suggestedAction": "reboot"})
    error = answer["error"]
    assert (error["type"], error["details"]["refusedSuggestedAction"]) == ("LLMError", "reboot")
    assert "suggestedAction" not in error


def test_a_plugin_over_its_timeout_is_killed_and_reported(hosts: dict[str, Host]) -> None:
    started = time.monotonic()
    status, answer = hosts["slow"].execute({"seconds": 30})
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + MARGIN, elapsed
    assert (status, answer["port"]) == (200, "error")
    error = answer["error"]
    assert error["type"] == "Timeout"
    assert error["retryable"] is True
    assert error["suggestedAction"] == "retry"
    assert error["details"]["timeoutMs"] == 1000
    assert error["maxAttempts"] == 2, "errorHandling.retryPolicy.maxAttempts"
    status, answer = hosts["slow"].execute({"seconds": 0})
    assert (status, answer["port"], answer["output"]) == (200, "result", {"slept": 0})


def test_calls_run_in_parallel_up_to_the_worker_count(hosts: dict[str, Host]) -> None:
    answers: list[Mapping[str, Any]] = []

    def call() -> None:
        answers.append(hosts["slow"].execute({"seconds": 0.6})[1])

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer["port"] for answer in answers] == ["result", "result"]
    assert time.monotonic() - started < 1.1, "two workers: the two calls overlapped"


def test_a_crashed_worker_is_reported_and_the_host_serves_on(hosts: dict[str, Host]) -> None:
    host = hosts["crasher"]
    before = host.metrics()
    for _ in range(2):
        status, answer = host.execute({"crash": True})
        assert (status, answer["port"]) == (200, "error")
        error = answer["error"]
        assert error["type"] == "UnknownError"
        assert error["retryable"] is True
        assert error["details"] == {"exitCode": 3}
        assert "exit code 3" in error["message"]
        status, answer = host.execute({"crash": False})
        assert (status, answer["port"], answer["output"]) == (200, "result", {"survived": True})
    assert host.get("/healthz") == (200, {"status": "ok"})
    after = host.metrics()
    assert after['wayang_plugin_executions_total{outcome="crash"}'] == (
        before['wayang_plugin_executions_total{outcome="crash"}'] + 2
    )
    assert (
        after["wayang_plugin_workers_started_total"]
        >= before["wayang_plugin_workers_started_total"] + 2
    )


# ------------------------------------------------------------------------------------------------
# Probes, metrics, logs


def test_probes_of_a_working_plugin(hosts: dict[str, Host]) -> None:
    assert hosts["echo"].get("/healthz") == (200, {"status": "ok"})
    assert hosts["echo"].get("/readyz") == (
        200,
        {
            "status": "ready",
            "pluginId": "io.wayang.samples/echo",
            "version": "1.0.0",
            "entrypoint": "echo_plugin:execute",
        },
    )


BROKEN = {
    "import-raises": (
        "raise RuntimeError('broken on purpose')\n",
        "RuntimeError: broken on purpose",
    ),
    "import-exits": ("import os\nos._exit(7)\n", "exit code 7 while importing"),
    "no-entrypoint": ("def other(inputs, properties):\n    return {}\n", "AttributeError"),
    "syntax-error": ("def execute(:\n", "SyntaxError"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_module_keeps_the_host_up_and_not_ready(tmp_path: Path, case: str) -> None:
    code, reason = BROKEN[case]
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "echo_plugin.py").write_text(code)
    with running(tmp_path, sample("echo"), tmp_path / "plugin") as host:
        body = host.wait_ready(503)
        assert body["status"] == "not ready"
        assert reason in body["reason"]
        assert host.get("/healthz") == (200, {"status": "ok"})
        status, answer = host.execute({"text": "a"})
        assert status == 503
        assert answer["error"]["type"] == "PluginLoadError"
        assert reason in answer["error"]["message"]
        assert host.metrics()["wayang_plugin_ready"] == 0
        time.sleep(0.3)
        assert host.process.poll() is None, "the host is still running"


def test_a_missing_or_invalid_descriptor_keeps_the_host_up(tmp_path: Path) -> None:
    with running(tmp_path / "missing", None, SAMPLES / "echo") as host:
        body = host.wait_ready(503)
        assert "descriptor: cannot read the descriptor" in body["reason"]
        status, answer = host.execute({"text": "a"})
        assert status == 503
        assert answer["port"] == "error"
        assert answer["error"]["originNode"] == "wayang-runtime-python"
    bad = sample("echo")
    bad["inputs"][0]["schema"] = {"type": "strung"}
    with running(tmp_path / "bad", bad, SAMPLES / "echo") as host:
        assert "inputs[0].schema: not a valid JSON Schema" in host.wait_ready(503)["reason"]
    remote = sample("echo")
    remote["inputs"][0]["schema"] = {"$ref": "https://example.com/schema.json"}
    with running(tmp_path / "remote", remote, SAMPLES / "echo") as host:
        assert "points outside the schema" in host.wait_ready(503)["reason"]


def test_metrics_count_outcomes_and_durations(hosts: dict[str, Host]) -> None:
    host = hosts["echo"]
    before = host.metrics()
    host.execute({"text": "a"})
    host.execute({"text": 1})
    host.post(b"nope")
    after = host.metrics()

    def moved(name: str) -> float:
        return after[name] - before[name]

    assert moved('wayang_plugin_executions_total{outcome="success"}') == 1
    assert moved('wayang_plugin_executions_total{outcome="invalid"}') == 2
    assert moved('wayang_plugin_executions_total{outcome="error"}') == 0
    assert moved("wayang_plugin_execution_seconds_count") == 3
    assert moved('wayang_plugin_execution_seconds_bucket{le="+Inf"}') == 3
    assert moved('wayang_plugin_execution_seconds_bucket{le="1.0"}') == 3
    assert moved("wayang_plugin_execution_seconds_sum") > 0
    assert after["wayang_plugin_ready"] == 1
    assert hosts["failing"].metrics()['wayang_plugin_executions_total{outcome="error"}'] >= 1
    hosts["slow"].execute({"seconds": 5})
    assert hosts["slow"].metrics()['wayang_plugin_executions_total{outcome="timeout"}'] >= 1


def breaker_state(host: Host) -> str:
    samples = host.metrics()
    states = [s for s in ("closed", "open", "half_open")
              if samples[f'wayang_plugin_call_breaker{{state="{s}"}}'] == 1]  # fmt: skip
    assert len(states) == 1, samples
    return states[0]


def test_failing_calls_make_the_host_unready_until_a_trial_succeeds(
    tmp_path: Path,
) -> None:
    """errorHandling.circuitBreaker at the call level: failureThreshold consecutive failures
    turn /readyz to 503 with the last failure (the kubelet takes the pod out of its Service and
    the operator's breaker counts it); after timeoutMs it is ready for a trial, which closes it
    after successThreshold successes. The caller's own invalid requests and the plugin's
    judgements of the request (ValidationError, SecurityError) do not count."""
    counter = str(tmp_path / "calls")
    breaker = {"failureThreshold": 2, "successThreshold": 1, "timeoutMs": 1000}
    descriptor = sample("flaky", errorHandling={"circuitBreaker": breaker})
    with running(tmp_path / "host", descriptor, SAMPLES / "flaky") as host:
        host.wait_ready()
        failing = {"failures": 2, "counterFile": counter}
        host.execute({"text": 7})  # invalid: the caller's fault
        assert host.execute({}, failing)[1]["port"] == "error"
        assert host.get("/readyz")[0] == 200, "one failure is below the threshold"
        assert host.execute({}, failing)[1]["port"] == "error"
        status, body = host.get("/readyz")
        assert status == 503, body
        assert body["reason"].startswith("calls failing: 2 consecutive calls failed"), body
        assert "the last with ToolError: the plugin raised FlakyError" in body["reason"], body
        assert (breaker_state(host), host.metrics()["wayang_plugin_ready"]) == ("open", 0)
        host.wait_ready()  # the trial, after timeoutMs
        assert breaker_state(host) == "half_open"
        assert host.execute({}, failing)[1]["port"] == "result"
        assert (host.get("/readyz")[0], breaker_state(host)) == (200, "closed")


def test_a_failed_trial_opens_it_again_and_judgements_of_the_request_do_not_count(
    tmp_path: Path,
) -> None:
    breaker = {"failureThreshold": 3, "timeoutMs": 1000}
    descriptor = sample("failing", errorHandling={"circuitBreaker": breaker})
    with running(tmp_path / "host", descriptor, SAMPLES / "failing") as host:
        host.wait_ready()
        for kind in ("ValidationError", "SecurityError") * 3:
            host.execute({}, {"errorType": kind})
        assert (host.get("/readyz")[0], breaker_state(host)) == (200, "closed")
        for _ in range(3):
            host.execute({}, {"errorType": "NetworkError"})
        assert host.get("/readyz")[0] == 503
        host.wait_ready()
        host.execute({})
        status, body = host.get("/readyz")
        assert (status, breaker_state(host)) == (503, "open"), "one failed trial opens it"
        assert "the last with ToolError: the plugin raised ValueError" in body["reason"]

    disabled = sample("failing", errorHandling={"circuitBreaker": {"enabled": False}})
    with running(tmp_path / "off", disabled, SAMPLES / "failing") as host:
        host.wait_ready()
        for _ in range(6):
            host.execute({})
        assert (host.get("/readyz")[0], breaker_state(host)) == (200, "closed")


def test_logs_are_json_lines_with_the_run(hosts: dict[str, Host]) -> None:
    run_id = str(uuid.uuid4())
    hosts["failing"].execute({}, runId=run_id)
    records = hosts["failing"].logs()
    (record,) = [r for r in records if r.get("runId") == run_id]
    assert record["event"] == "execute"
    assert record["pluginId"] == "io.wayang.samples/failing"
    assert record["outcome"] == "error"
    assert record["errorType"] == "ToolError"
    assert isinstance(record["durationMs"], float)
    assert {"listening", "ready"} <= {r["event"] for r in records}


def test_sigterm_stops_the_host_and_its_workers(tmp_path: Path) -> None:
    with running(tmp_path, sample("echo"), SAMPLES / "echo") as host:
        host.wait_ready()
        host.execute({"text": "a"})
        workers = _descendants(host.process.pid)
        assert workers, "the forkserver and the workers are the host's descendants"
        host.process.send_signal(signal.SIGTERM)
        assert host.process.wait(10) == 0
        assert host.logs()[-1]["event"] == "stopped"
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)]


def test_after_sigterm_it_drains_calls_then_stops(tmp_path: Path) -> None:
    """During the drain a rolling update's calls still routed here are answered while readyz
    tells the kubelet (and so the Service) to stop sending more."""
    env = {"WAYANG_DRAIN_SECONDS": "1.5"}
    with running(tmp_path, sample("echo"), SAMPLES / "echo", env) as host:
        host.wait_ready()
        host.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert host.get("/readyz") == (503, {"status": "not ready", "reason": "stopping"})
        status, answer = host.execute({"text": "still"})
        assert status == 200
        assert answer["output"]["text"].startswith("STILL")
        assert host.process.poll() is None
        assert host.process.wait(10) == 0


def test_introspect_reports_its_sandbox(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    target = f"127.0.0.1:{listener.getsockname()[1]}"
    with running(tmp_path, sample("introspect"), SAMPLES / "introspect") as host:
        host.wait_ready()
        status, answer = host.execute({"target": target})
    listener.close()
    assert status == 200
    report = answer["output"]
    assert report["kernel"] == os.uname().release, "no sandbox here: the host's kernel"
    assert report["egress"] == "ok"
    assert report["uid"] == os.getuid()
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with running(tmp_path / "again", sample("introspect"), SAMPLES / "introspect") as host:
        host.wait_ready()
        _, refused = host.execute({"target": f"127.0.0.1:{port}"})
    assert refused["output"]["egress"].startswith("ConnectionRefusedError")


# ------------------------------------------------------------------------------------------------
# The images


ONLY_RUNTIME = ("--only", "runtime-python", "--only", "sample-*")


def _build(out: Path) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        # the runtime and its samples (the operator's image has tests of its own)
        [sys.executable, str(RUNTIME / "build.py"), "--out", str(out), *ONLY_RUNTIME],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "[images]" in result.stderr
    built: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return built


def _layers(layout: Path) -> tuple[dict[str, Any], list[Path]]:
    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    return config, [blob(layer["digest"]) for layer in manifest["layers"]]


def _chroot_run(image: Path, root: Path) -> contextlib.AbstractContextManager[Host]:
    """The image's host in a chroot of its layers, as its user (root and chroot(8) needed)."""
    config, layers = _layers(image)
    for layer in layers:
        with tarfile.open(layer) as tar:
            tar.extractall(root, filter="fully_trusted")
    (root / "dev").mkdir(exist_ok=True)
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (root / "tmp").chmod(0o1777)
    env = dict(item.split("=", 1) for item in config["config"]["Env"])
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    command = [chroot, f"--userspec={config['config']['User']}", str(root)]
    command += config["config"]["Entrypoint"]
    image_env = {**env, "PORT": "0", "WAYANG_BIND": "127.0.0.1"}
    plugin_path = Path(env["WAYANG_PLUGIN_PATH"])
    return running(root.parent / "logs", None, plugin_path, image_env, command, inherit=False)


@pytest.mark.slow
def test_build_makes_reproducible_images_that_run(tmp_path: Path) -> None:
    first, second = _build(tmp_path / "a"), _build(tmp_path / "b")
    runtime = "localhost/wayang/runtime-python:0.1.0"
    names = {runtime} | {f"localhost/wayang/sample-{n}:1.0.0" for n in SAMPLE_NAMES}
    assert set(first) == set(second) == names
    for name, image in first.items():
        assert image["digest"] == second[name]["digest"], f"{name} is not reproducible"
        assert manifest_digest(Path(image["layout"])) == image["digest"]
        assert manifest_digest(Path(image["tar"])) == image["digest"]
    config, layers = _layers(Path(first["localhost/wayang/sample-echo:1.0.0"]["layout"]))
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Entrypoint"] == ["python3", "/opt/wayang/host.py"]
    assert len(layers) == 4, "root filesystem, the host's libraries, the host, the plugin"
    base, _ = _layers(Path(first[runtime]["layout"]))
    assert base["rootfs"]["diff_ids"] == config["rootfs"]["diff_ids"][:3], "shared base layers"
    with tarfile.open(layers[0]) as tar:
        names_in_base = set(tar.getnames())
    assert {"./usr/bin/python3", "./var/lib/dpkg/status"} <= names_in_base
    assert any("/dist-packages/jsonschema/" in name for name in names_in_base)
    assert not any(name.startswith("./usr/share/perl/") for name in names_in_base)
    with tarfile.open(layers[1]) as tar:
        libraries = {name.split("/")[3] for name in tar.getnames() if name.count("/") >= 3}
    assert {"celpy", "opentelemetry", "re2"} <= libraries, "in opt/wayang/deps, not on sys.path"
    with tarfile.open(layers[3]) as tar:
        module = tar.extractfile("opt/wayang/plugin/echo_plugin.py")
        descriptor = tar.extractfile("etc/wayang/plugin.json")
        assert module is not None
        assert descriptor is not None
        code, document = module.read(), json.loads(descriptor.read())
    assert code == (SAMPLES / "echo" / "echo_plugin.py").read_bytes()
    digest = document["implementation"]["digest"]
    assert digest == "sha256:" + hashlib.sha256(code).hexdigest()
    assert config["config"]["Labels"]["io.wayang.plugin.digest"] == digest
    if os.geteuid() != 0 or not (shutil.which("chroot") or Path("/usr/sbin/chroot").exists()):
        return  # running the image's own Python needs chroot(2), which needs root
    echo = Path(first["localhost/wayang/sample-echo:1.0.0"]["layout"])
    with _chroot_run(echo, tmp_path / "root") as host:
        host.wait_ready()
        status, answer = host.execute({"text": "from the image"})
        assert (status, answer["output"]["text"]) == (200, "FROM THE IMAGE!")
        status, answer = host.execute({"text": 5})
        assert answer["error"]["details"]["field"] == "inputs.text"
    imports = (
        "import sys; sys.path.append('/opt/wayang/deps'); import celpy, re2; "
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter; "
        "print(celpy.Environment().program(celpy.Environment().compile('1 < 2')).evaluate({}))"
    )
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    loaded = subprocess.run(
        [chroot, "--userspec=65532:65532", str(tmp_path / "root"), "python3", "-c", imports],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (loaded.returncode, loaded.stdout.strip()) == (0, "True"), loaded.stderr
