"""The operator's log lines: JSON (one object per line, for log pipelines) or text (for people).

A JSON line has `time` (RFC 3339, UTC), `level`, `logger`, `message`, and, whenever the line
concerns an object, `namespace`, `kind` and `plugin` (or `object` for another kind's name). Those
come from kopf's per-object loggers (the `k8s_ref` every handler's `logger` carries) and from our
own module loggers, which pass `extra=about(namespace, plugin)`. Any other `extra=` field is kept
as a field of its own (`phase`, ...); an exception becomes `exception`, its traceback text.

kopf has a JSON formatter of its own (`kopf._core.actions.loggers.ObjectJsonFormatter`, via
python-json-logger), but it nests the reference under `object`, has no logger name and lives in
a private module; this formatter is small and gives the flat fields log queries filter on.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, Literal, TextIO

LogFormat = Literal["auto", "json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_STANDARD = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime", "taskName"}
)
"""Attributes every LogRecord has; anything else on a record came from `extra=`."""
_KOPF_INTERNAL = frozenset({"k8s_ref", "k8s_skip", "settings"})


def about(namespace: str, plugin: str, **fields: Any) -> dict[str, Any]:
    """`extra=` for a log line about one Plugin: its namespace and name as JSON fields."""
    return {"namespace": namespace, "plugin": plugin, "kind": "Plugin", **fields}


def _plain(value: Any) -> Any:
    """A JSON-able version of an `extra=` value (anything else is its str)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the object it concerns as flat fields."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            kind, name = ref.get("kind"), ref.get("name")
            if ref.get("namespace"):
                line["namespace"] = ref["namespace"]
            if kind:
                line["kind"] = kind
            if name:
                line["plugin" if kind == "Plugin" else "object"] = name
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _KOPF_INTERNAL and key not in line:
                line[key] = _plain(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def resolve(log_format: LogFormat, stream: TextIO) -> Literal["json", "text"]:
    """`auto`: text on a terminal (a person is reading), JSON otherwise (a container's stdout,
    a file, a pipe: something collects it)."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure(log_format: LogFormat, level: str, stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one writing `log_format` lines at `level`."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    if resolve(log_format, out) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler
