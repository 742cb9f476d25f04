"""Log lines: JSON objects with time, level, logger, message and the object a line is about, from
kopf's per-object loggers and from our own module loggers alike; text on a terminal."""

from __future__ import annotations

import datetime
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from wayang_operator.controller import logs
from wayang_operator.settings import OperatorSettings


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line, as the operator would write it with WAYANG_LOG_FORMAT=json."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("json", "INFO", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_handler_logger_line_names_its_plugin(captured: io.StringIO) -> None:
    """kopf hands every handler a `logger` that carries the object's reference (k8s_ref)."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # no event queue outside a running operator
    body = {
        "apiVersion": "wayang.io/v1alpha1",
        "kind": "Plugin",
        "metadata": {"name": "pii-redactor", "namespace": "team-a", "uid": "u1"},
    }
    logger = kopf.ObjectLogger(body=kopf.Body(body), settings=settings)  # type: ignore[arg-type]
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("reconciling failed", extra={"attempt": 2})
    (line,) = lines(captured)
    assert line["level"] == "error"
    assert line["logger"] == "kopf.objects"
    assert line["message"] == "reconciling failed"
    assert (line["namespace"], line["kind"], line["plugin"]) == ("team-a", "Plugin", "pii-redactor")
    assert line["attempt"] == 2
    assert "ValueError: boom" in line["exception"]
    assert not {"settings", "k8s_ref", "k8s_skip"} & set(line), "kopf's internals stay out"
    moment = datetime.datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert line["time"].endswith("Z")
    assert moment.utcoffset() == datetime.timedelta(0)


def test_our_module_loggers_name_the_plugin(captured: io.StringIO) -> None:
    logging.getLogger("wayang.reconcile").info(
        "plugin %s/%s: %s", "team-a", "x", "Ready", extra=logs.about("team-a", "x", phase="Ready")
    )
    logging.getLogger("wayang.leadership").info("leading")
    about, plain = lines(captured)
    assert about["message"] == "plugin team-a/x: Ready"
    assert (about["namespace"], about["plugin"], about["phase"]) == ("team-a", "x", "Ready")
    assert about["logger"] == "wayang.reconcile"
    assert "namespace" not in plain
    assert "plugin" not in plain


def test_another_kind_is_named_as_object(captured: io.StringIO) -> None:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    body = {"kind": "ScanReport", "metadata": {"name": "sha256-ab", "namespace": "team-a"}}
    kopf.ObjectLogger(body=kopf.Body(body), settings=settings).warning("slow")  # type: ignore[arg-type]
    (line,) = lines(captured)
    assert (line["kind"], line["object"]) == ("ScanReport", "sha256-ab")
    assert "plugin" not in line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert logs.resolve("auto", Terminal()) == "text"
    assert logs.resolve("auto", io.StringIO()) == "json"
    assert logs.resolve("json", Terminal()) == "json"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        terminal = Terminal()
        logs.configure("auto", "WARNING", terminal)
        logging.getLogger("wayang.test").info("hidden")
        logging.getLogger("wayang.test").warning("shown")
        assert terminal.getvalue().endswith(" WARNING wayang.test shown\n")
        assert "hidden" not in terminal.getvalue()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_settings_read_the_format_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (OperatorSettings().log_format, OperatorSettings().log_level) == ("auto", "INFO")
    monkeypatch.setenv("WAYANG_LOG_FORMAT", "JSON")
    monkeypatch.setenv("WAYANG_LOG_LEVEL", "debug")
    settings = OperatorSettings()
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    monkeypatch.setenv("WAYANG_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        OperatorSettings()
