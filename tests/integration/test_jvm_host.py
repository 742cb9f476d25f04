"""The runtime host's JVM strategy as real processes: the JVM samples compiled by build.py
(javac), run by io.wayang.jvm.Host in a JVM per host worker (wayang_jvm.py).

The node contract is the same as every strategy's (test_host_conformance.py runs the JVM samples
too); here is what only the JVM has: the plugin's class loader sees the JDK and nothing of the
host or of the JVM's class path, a call thread that ignores its interrupt costs the worker, an
exception or an answer that is no answer is a ToolError, the plugin's System.out and System.in
never touch the protocol, the heap follows the memory limit, and the jars are reproducible.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import signal
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_runtime_host import (
    Host,
    _descendants,
    _running,
    running,
    valid_descriptor,
)
from tests.runtime_build import BUILD

JVM_SAMPLES: Path = BUILD.JVM_SAMPLES
JVM_SAMPLE_NAMES = ("crash", "echo", "fail", "odd", "peek", "spin")


@functools.cache
def host_jar() -> bytes:
    return bytes(BUILD.jvm_host_jar())


@functools.cache
def sample_jar(name: str) -> bytes:
    return bytes(BUILD.jar_sample(JVM_SAMPLES / name)[1])


def jvm_descriptor(name: str) -> dict[str, Any]:
    descriptor: dict[str, Any] = json.loads((JVM_SAMPLES / name / "plugin.json").read_text())
    return descriptor


@contextlib.contextmanager
def jvm_running(
    folder: Path,
    name: str,
    *,
    entrypoint: str | None = None,
    files: Mapping[str, bytes] | None = None,
    host: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Host]:
    """host.py on JVM sample `name`: its jar as the fetcher keeps it (artifact.jar) unless
    `files` says what the plugin folder holds; the JVM host jar is build.py's unless `host`."""
    descriptor = jvm_descriptor(name)
    if entrypoint is not None:
        descriptor["implementation"]["entrypoint"] = entrypoint
    plugin = folder / "plugin"
    for path, data in (files if files is not None else {"artifact.jar": sample_jar(name)}).items():
        (plugin / path).parent.mkdir(parents=True, exist_ok=True)
        (plugin / path).write_bytes(data)
    plugin.mkdir(parents=True, exist_ok=True)
    jar = folder / "wayang-jvm-host.jar"
    jar.write_bytes(host or host_jar())
    with running(folder, descriptor, plugin, {"WAYANG_JVM_HOST_JAR": str(jar), **(env or {})}) as h:
        yield h


def _entries(jar: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(jar)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _jar(entries: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _java(host: Host) -> list[int]:
    return [
        pid
        for pid in _descendants(host.process.pid)
        if Path(f"/proc/{pid}/comm").read_text().strip() == "java"
    ]


# --- the build --------------------------------------------------------------------------------


def test_the_jars_are_the_same_bytes_on_every_build() -> None:
    assert BUILD.jvm_host_jar() == host_jar()
    assert "io/wayang/jvm/Host.class" in _entries(host_jar())
    for name in JVM_SAMPLE_NAMES:
        file_name, jar = BUILD.jar_sample(JVM_SAMPLES / name)
        assert file_name == f"{name}-1.0.0.jar"
        assert jar == sample_jar(name)
        entries = _entries(jar)
        assert next(iter(entries)) == "META-INF/MANIFEST.MF", "the manifest comes first"
        pom = entries[f"META-INF/maven/io.wayang.samples/{name}/pom.properties"].decode()
        assert pom == f"groupId=io.wayang.samples\nartifactId={name}\nversion=1.0.0\n"


@pytest.mark.parametrize("name", JVM_SAMPLE_NAMES)
def test_the_jvm_sample_descriptors_are_valid_plugin_descriptors(name: str) -> None:
    model = valid_descriptor(jvm_descriptor(name))
    assert model.implementation.type == "jar"
    assert model.implementation.coordinate == f"io.wayang.samples:{name}:1.0.0"
    entrypoint = str(model.implementation.entrypoint)
    assert f"{entrypoint.replace('.', '/')}.class" in _entries(sample_jar(name))


# --- class loaders ------------------------------------------------------------------------------


def test_the_plugin_sees_the_jdk_and_nothing_of_the_host_or_the_class_path(tmp_path: Path) -> None:
    """The echo sample's classes are put on the JVM's class path beside the host's: a plugin
    loader whose parent were the application loader would see both."""
    crowded = _jar({**_entries(host_jar()), **_entries(sample_jar("echo"))})
    with jvm_running(tmp_path, "peek", host=crowded) as host:
        host.wait_ready()
        status, answer = host.execute({})
    assert (status, answer["port"]) == (200, "seen"), answer
    seen = answer["output"]
    assert str(tmp_path / "wayang-jvm-host.jar") in seen["classPath"].split(":")
    assert seen["io.wayang.samples.echo.Echo"] == {"own": False, "context": False}
    assert seen["io.wayang.jvm.Host"] == {"own": False, "context": False}
    assert seen["java.sql.Connection"] == {"own": True, "context": True}, "the platform loader"
    assert seen["contextIsOwn"] is True, "calls run with the plugin's loader as context loader"


def test_the_jars_of_lib_are_the_plugins_dependencies(tmp_path: Path) -> None:
    files = {"artifact.jar": sample_jar("peek"), "lib/echo-1.0.0.jar": sample_jar("echo")}
    with jvm_running(tmp_path, "peek", files=files) as host:
        host.wait_ready()
        _, answer = host.execute({})
    assert answer["output"]["io.wayang.samples.echo.Echo"] == {"own": True, "context": True}


def test_a_jar_the_fetcher_unpacked_loads_too(tmp_path: Path) -> None:
    """The pod's fetcher unpacks every zip artifact into the plugin folder."""
    with jvm_running(tmp_path, "echo", files=_entries(sample_jar("echo"))) as host:
        host.wait_ready()
        status, answer = host.execute({"text": "unpacked"})
    assert (status, answer["output"]["inputs"]) == (200, {"text": "unpacked"})


# --- calls --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    with jvm_running(tmp_path_factory.mktemp("odd"), "odd") as host:
        host.wait_ready()
        yield host


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("throw", "the plugin threw java.lang.IllegalStateException: odd on purpose"),
        ("null", "io.wayang.samples.odd.Odd.apply returned null"),
        ("not-json", "the JVM plugin's answer is not JSON: Expecting value"),
        ("neither", 'the JVM plugin\'s answer has no "output" or "error"'),
    ],
)
def test_an_exception_or_an_answer_that_is_no_answer_is_a_tool_error(
    odd: Host, text: str, message: str
) -> None:
    status, answer = odd.execute({"text": text})
    assert (status, answer["port"]) == (200, "error")
    error = answer["error"]
    assert (error["type"], error["retryable"]) == ("ToolError", False)
    assert error["message"].startswith(message), error["message"]
    if text == "throw":
        assert error["details"]["javaException"] == "java.lang.IllegalStateException"
    assert odd.get("/readyz")[0] == 200


def test_the_plugins_stdout_and_stdin_are_not_the_protocol(odd: Host) -> None:
    status, answer = odd.execute({"text": "print"})
    assert (status, answer["output"]) == (200, {"read": -1}), "stdin is empty; no forged answer"
    assert "forged by System.out" in odd.stderr.read_text(), "System.out goes to stderr"
    assert odd.execute({"text": "neither"})[1]["error"]["type"] == "ToolError", "frames in step"


def _jvms(host: Host, count: int) -> set[int]:
    """The host's JVMs, once there are `count` (one per worker)."""
    deadline = time.monotonic() + 10
    while len(found := set(_java(host))) != count:
        assert time.monotonic() < deadline, f"{len(found)} JVMs, not {count}"
        time.sleep(0.05)
    return found


def test_a_call_that_ignores_its_interrupt_costs_its_worker_and_the_host_serves_on(
    tmp_path: Path,
) -> None:
    """Two warm workers: the call after the looping one is served by the other at once."""
    with jvm_running(tmp_path, "spin", env={"WAYANG_WORKERS": "2"}) as host:
        host.wait_ready()
        before = _jvms(host, 2)
        _, answer = host.execute({"text": "sleep"})
        assert answer["error"]["details"]["stopped"] is True
        assert _jvms(host, 2) == before, "the worker and its JVM serve on"
        started = time.monotonic()
        _, answer = host.execute({"text": "loop"})
        assert time.monotonic() - started < 1.0, "answered at the deadline, not at the kill"
        error = answer["error"]
        assert (error["type"], error["retryable"]) == ("Timeout", True)
        assert error["message"].endswith("and did not stop when interrupted")
        assert error["details"]["stopped"] is False
        _, answer = host.execute({"text": "sleep"})
        assert answer["error"]["details"]["stopped"] is True
        after = _jvms(host, 2)
        assert len(after - before) == 1, "the looping JVM was replaced"
        assert host.get("/readyz")[0] == 200


def test_the_heap_is_three_quarters_of_each_workers_share_of_the_memory(tmp_path: Path) -> None:
    env = {"WAYANG_JVM_MEMORY": "256Mi", "WAYANG_WORKERS": "2"}
    with jvm_running(tmp_path, "echo", env=env) as host:
        host.wait_ready()
        deadline = time.monotonic() + 10
        while len(_java(host)) < 2:
            assert time.monotonic() < deadline, "each worker has its JVM"
            time.sleep(0.05)
        for pid in _java(host):
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"-Xmx98304k" in arguments, arguments  # 256 MiB * 3/4 / 2
            assert b"-XX:+UseSerialGC" in arguments


def test_sigterm_stops_the_jvms_too(tmp_path: Path) -> None:
    with jvm_running(tmp_path, "echo") as host:
        host.wait_ready()
        jvms = _java(host)
        assert jvms
        host.process.send_signal(signal.SIGTERM)
        assert host.process.wait(10) == 0
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in jvms) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in jvms if _running(pid)]


# --- load failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "entrypoint", "reason"),
    [
        ({}, None, "JvmLoadError: no plugin jar: neither"),
        (None, "java.lang.String", "java.lang.String does not implement java.util.function"),
        (None, "io.wayang.jvm.Host", "the class io.wayang.jvm.Host is not in the plugin's jar"),
        (None, "io.wayang..Echo", "implementation.entrypoint 'io.wayang..Echo' is not the"),
    ],
)
def test_a_plugin_that_cannot_load_keeps_the_host_unready(
    tmp_path: Path, files: dict[str, bytes] | None, entrypoint: str | None, reason: str
) -> None:
    with jvm_running(tmp_path, "echo", files=files, entrypoint=entrypoint) as host:
        body = host.wait_ready(503)
        assert reason in body["reason"], body
        assert host.get("/healthz")[0] == 200
