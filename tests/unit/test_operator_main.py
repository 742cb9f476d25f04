"""`wayang-operator` answers --help and --version without starting (an image's smoke check).

Run as a process: importing the entry point registers the admission handlers in kopf's default
registry, which the in-process handler tests of the same session run without."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wayang_operator import __version__
from wayang_operator.settings import OperatorSettings


def operator(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from wayang_operator.controller.main import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(("flag", "expected"), [("--version", __version__), ("--help", "WAYANG_")])
def test_flags_answer_and_exit(flag: str, expected: str) -> None:
    answered = operator(flag)
    assert answered.returncode == 0, answered.stderr
    assert expected in answered.stdout


def test_an_unknown_argument_is_refused() -> None:
    refused = operator("--namespace", "x")
    assert refused.returncode == 2
    assert "unrecognized arguments" in refused.stderr


def test_plugin_telemetry_comes_from_json_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart passes scrapers and the collector as JSON; a wrong peer names the variable."""
    from pydantic import ValidationError  # noqa: PLC0415 - only this test

    from wayang_operator.controller.handlers import workload_options  # noqa: PLC0415
    from wayang_operator.controller.runtime import RUNTIME  # noqa: PLC0415

    monkeypatch.setenv(
        "WAYANG_PLUGIN_METRICS_FROM",
        '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]',
    )
    monkeypatch.setenv("WAYANG_PLUGIN_OTLP_ENDPOINT", "http://collector.obs:4318")
    monkeypatch.setenv("WAYANG_PLUGIN_OTLP_TO", '[{"cidr": "10.96.0.0/12"}]')
    settings = OperatorSettings()
    before = RUNTIME.settings
    RUNTIME.settings = settings
    try:
        options = workload_options()
    finally:
        RUNTIME.settings = before
    assert options is not None
    assert options.telemetry.otlp_endpoint == "http://collector.obs:4318"
    assert options.telemetry.otlp_to[0].cidr == "10.96.0.0/12"
    assert options.telemetry.metrics_from[0].namespace_selector is not None
    monkeypatch.setenv("WAYANG_PLUGIN_OTLP_TO", '[{"cidr": "everywhere"}]')
    with pytest.raises(ValidationError, match="plugin_otlp_to"):
        OperatorSettings()


def test_a_runtime_image_for_an_unknown_type_or_without_a_digest_is_refused_at_start() -> None:
    pinned = "localhost/wayang/runtime-jvm@sha256:" + "ab" * 32
    assert OperatorSettings(runtime_images={"jar": pinned}).runtime_images == {"jar": pinned}
    with pytest.raises(ValueError, match="'jvm' is not a hosted implementation type"):
        OperatorSettings(runtime_images={"jvm": pinned})
    with pytest.raises(ValueError, match="not pinned by @sha256: digest"):
        OperatorSettings(runtime_images={"wasm": "localhost/wayang/runtime-python:0.1.0"})
