#!/usr/bin/env python3
"""The Wayang Python runtime host: serves one plugin's node contract over HTTP.

The host reads the plugin's descriptor, validates every call against the descriptor's schemas and
runs the plugin's entrypoint `function(inputs, properties)` in worker processes, never in its own
process: a plugin that fails to import, raises, hangs, or kills its interpreter becomes an
ErrorPayload on the error port, and the host keeps serving. The standard library and `jsonschema`
are all it needs to serve (the image gets Debian's python3-jsonschema); cel-python (for
`validation.celExpression`) and OpenTelemetry (spans, when OTEL_* ask) are imported only when a
descriptor or the environment needs them, from /opt/wayang/deps in the image (pyproject's `host`
extra), which is on the host's sys.path and never on a plugin's.

Environment:
  WAYANG_DESCRIPTOR       the descriptor JSON (default /etc/wayang/plugin.json); a Plugin
                          resource (kind Plugin, with a spec) is accepted too
  WAYANG_PLUGIN_PATH      added to sys.path in the workers (default /opt/wayang/plugin); for a
                          `wasm` plugin, the folder of its module (`artifact`); for a `jar` or
                          `maven` plugin, of its jar (`artifact.jar` or unpacked) and `lib/`
  WAYANG_WASM_MEMORY      a wasm plugin's memory limit (a quantity, default 128Mi)
  WAYANG_WASM_PREOPEN     the directory a wasm plugin gets as WASI `/data` (empty: none)
  WAYANG_JVM_MEMORY       a jar/maven plugin's memory limit (a quantity): each worker's JVM
                          heap is 3/4 of its share (wayang_jvm.py); unset, the JVM's default
  WAYANG_JAVA             the `java` a jar/maven plugin runs on (default: `java` from PATH)
  WAYANG_JVM_HOST_JAR     the JVM host (default jvm/wayang-jvm-host.jar beside host.py)
  PORT                    the HTTP port (default 8080; 0 picks a free one, logged at start)
  WAYANG_TIMEOUT_MS       overrides resourceProfile.timeout (default 30000)
  WAYANG_WORKERS          executions at once (default 2)
  WAYANG_REUSE_WORKERS    "true" (default): a pool of warm workers, replaced when one is killed
                          or dies; "false": a fresh worker process per call
  WAYANG_SCHEMA_DIR       where port schemas given as references (a string such as
                          /schemas/ErrorPayload.schema.json) are found, by file name
                          (default /opt/wayang/schemas)
  WAYANG_BIND             the address to listen on (default 0.0.0.0)
  WAYANG_DRAIN_SECONDS    after SIGTERM, keep serving this long while readyz says "stopping"
                          (default 0; the operator sets 3, so a Service stops sending calls
                          before the server closes and a rollout loses none)
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER,
  OTEL_SDK_DISABLED, OTEL_SERVICE_NAME ...
                          the standard OpenTelemetry variables: an endpoint (or
                          OTEL_TRACES_EXPORTER=otlp|console) turns spans on, OTLP over
                          http/protobuf; unset, the host makes no span (see HostTracing)
  WAYANG_SECRET_CHECK_SECONDS
                          how often the Secret keys the configuration reads are checked for
                          new values, which are then taken up without a restart (default 5)
  WAYANG_SECRETS_DIR      where the Secrets a configuration reads from are mounted (default
                          /var/run/secrets/wayang): a value {"secretKeyRef": {"name": N,
                          "key": K}} is the file <dir>/configuration/N/K (text for a string
                          property, JSON otherwise)

Configuration wins: a property the descriptor's configuration sets cannot be overridden by a
call's properties (the call is refused, naming the property); only the others take per-call
values. A sensitive property's value is never logged or echoed in an error.

Endpoints: POST /execute, GET /healthz, GET /readyz, GET /metrics (see runtime-images/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import http.server
import importlib
import inspect
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

VERSION = "0.1.0"
ORIGIN = "wayang-runtime-python"
HERE = Path(__file__).resolve().parent
"""The host's folder: host.py, fetch.py, the executors of the wasm and JVM strategies
(wayang_wasm.py, wayang_jvm.py, and wayang_abi.py, what they share) and jvm/ (the JVM host)."""
LIB = HERE / "lib"
"""The plugin-side API (wayang_plugin.py: typed errors, the call's traceparent), on the workers'
sys.path after the plugin's own folder."""
DEPS = HERE / "deps"
"""The host's own libraries in the image (CEL, OpenTelemetry): the host's, not the plugin's."""
if DEPS.is_dir() and str(DEPS) not in sys.path:
    sys.path.append(str(DEPS))
"""originNode of errors raised before the descriptor names the plugin."""

DEFAULT_TIMEOUT_MS = 30000
SECRETS_DIR = "/var/run/secrets/wayang"
STARTUP_TIMEOUT = 60.0
"""How long a worker may take to import the plugin module."""
RELOAD_INTERVAL = 30.0
"""After a failed load, how long until a call or a readiness probe tries to load again."""
MAX_REQUEST_BYTES = 16 * 1024 * 1024
MESSAGE_MAX = 4096
STACK_MAX = 32768
DETAIL_ERRORS_MAX = 20
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OUTCOMES = ("success", "error", "timeout", "crash", "invalid")
REQUEST_KEYS = frozenset({"inputs", "properties", "runId", "attempt"})
PROPERTY_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "object": "object",
    "array": "array",
}
SIZE_KEYWORDS = {
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}

JsonObject = dict[str, Any]
WORKER_PRELOAD = (
    "asyncio",
    "dataclasses",
    "http.server",
    "inspect",
    "json",
    "multiprocessing.connection",
    "pathlib",
    "tempfile",
    "traceback",
    "uuid",
)
"""What the forkserver imports once for every worker (see _context)."""


# ------------------------------------------------------------------------------------------------
# Logs and errors


_log_lock = threading.Lock()


def now_rfc3339() -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def log(event: str, level: str = "info", **fields: Any) -> None:
    """One JSON line on stdout (fields that are None are left out)."""
    record = {"time": now_rfc3339(), "level": level, "event": event}
    record.update({key: value for key, value in fields.items() if value is not None})
    line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_payload(
    kind: str,
    message: str,
    *,
    origin: str,
    run_id: str | None,
    retryable: bool,
    details: JsonObject | None = None,
    suggested: str | None = None,
    stack: str | None = None,
) -> JsonObject:
    """An ErrorPayload (schemas/ErrorPayload.schema.json): optional fields only when known."""
    payload: JsonObject = {
        "type": kind,
        "message": _cut(message, MESSAGE_MAX),
        "retryable": retryable,
        "originNode": _cut(origin, 253),
        "timestamp": now_rfc3339(),
    }
    if details is not None:
        payload["details"] = details
    if run_id is not None:
        payload["originRunId"] = run_id
    if suggested is not None:
        payload["suggestedAction"] = suggested
    if stack:
        payload["stackTrace"] = stack[-STACK_MAX:]
    return payload


# ------------------------------------------------------------------------------------------------
# The descriptor


@dataclass(frozen=True)
class BreakerConfig:
    """errorHandling.circuitBreaker, with the descriptor's defaults (api/descriptor.py)."""

    enabled: bool = True
    failure_threshold: int = 5
    success_threshold: int = 2
    timeout: float = 60.0

    @classmethod
    def of(cls, spec: Any) -> BreakerConfig:
        spec = spec if isinstance(spec, dict) else {}

        def number(key: str, default: float, low: float) -> Any:
            value = spec.get(key, default)
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
            return value if ok else default

        return cls(
            enabled=spec.get("enabled", True) is not False,
            failure_threshold=number("failureThreshold", cls.failure_threshold, 1),
            success_threshold=number("successThreshold", cls.success_threshold, 1),
            timeout=number("timeoutMs", cls.timeout * 1000, 0) / 1000,
        )


COUNTED = frozenset({"error", "timeout", "crash"})
"""Outcomes that count against the plugin's health; `invalid` is the caller's doing."""
NOT_THE_PLUGINS_FAULT = frozenset({"ValidationError", "SecurityError"})
"""Error types a plugin raises to judge the request, not because it failed."""


class CallHealth:
    """Whether the plugin's calls work, as the host's readiness says it: the seed's circuit
    breaker at the call level, so that call failures reach the operator (seed §13: a failing
    plugin may be quarantined) without the operator reaching into the sandbox.

    `failure_threshold` consecutive failed calls open it: /readyz answers 503 with the last
    failure, the kubelet marks the pod unready, its Service stops sending calls, and the
    operator's breaker counts the pod as failing once per check interval (a pod that stops
    being ready after serving counts at once, without the start-up grace). After `timeout` it
    half-opens: ready again, so calls come; `success_threshold` successes close it, one failure
    opens it again. The clock is passed in (tests)."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self.failures = 0
        self.successes = 0
        self.opened_at: float | None = None
        self.half_open = False
        self.last: str = ""
        self._lock = threading.Lock()

    def record(self, outcome: str, error: Mapping[str, Any]) -> None:
        if not self.config.enabled or outcome not in COUNTED | {"success"}:
            return
        if outcome != "success" and error.get("type") in NOT_THE_PLUGINS_FAULT:
            return
        with self._lock:
            self._due()
            if outcome == "success":
                self.failures = 0
                if self.half_open:
                    self.successes += 1
                    if self.successes >= self.config.success_threshold:
                        self.half_open, self.successes = False, 0
                return
            self.failures += 1
            self.last = f"{error.get('type')}: {_cut(str(error.get('message')), 300)}"
            if self.half_open or self.failures >= self.config.failure_threshold:
                self.opened_at, self.half_open, self.successes = self.clock(), False, 0

    def _due(self) -> None:
        if self.opened_at is not None and self.clock() - self.opened_at >= self.config.timeout:
            self.opened_at, self.half_open = None, True

    def unready(self) -> str | None:
        """Why the host is not ready because of its calls, or None."""
        with self._lock:
            self._due()
            if self.opened_at is None:
                return None
            left = self.config.timeout - (self.clock() - self.opened_at)
            return (
                f"calls failing: {self.failures} consecutive calls failed "
                f"(errorHandling.circuitBreaker.failureThreshold {self.config.failure_threshold}),"
                f" the last with {self.last}; ready again for a trial in {max(0, left):.0f} s"
            )

    def state(self) -> str:
        with self._lock:
            self._due()
            if self.opened_at is not None:
                return "open"
            return "half_open" if self.half_open else "closed"


class DescriptorError(ValueError):
    """The descriptor cannot be served; the message says why (readyz reports it)."""


@dataclass(frozen=True)
class Port:
    name: str
    validator: Any
    """A jsonschema validator for the port's data."""
    required: bool = True
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class Property:
    name: str
    validator: Any
    required: bool
    sensitive: bool
    cel: Cel | None = None
    """validation.celExpression, compiled."""


@dataclass(frozen=True)
class Plugin:
    id: str
    version: str
    entrypoint: str
    timeout: float
    """Seconds one execution may take."""
    inputs: tuple[Port, ...]
    success: Port
    error_port: str
    properties: tuple[Property, ...]
    values: JsonObject
    """Property values before the request's: the defaults, then the descriptor's configuration."""
    max_attempts: int | None = None
    configured: frozenset[str] = frozenset()
    """Properties the configuration sets: a call may not override them."""
    secret_files: tuple[Path, ...] = ()
    """The mounted Secret keys the configuration read (watched: see Host.watch_secrets)."""
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    """errorHandling.circuitBreaker: when call failures make the host unready (CallHealth)."""


def _local_refs_only(schema: Any, where: str) -> None:
    """Refuse `$ref`s that leave the schema: validation must never fetch anything."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise DescriptorError(
                f"{where}: $ref {ref!r} points outside the schema; the host resolves only local "
                "references ('#/...') and whole-port schema references"
            )
        for key, value in schema.items():
            _local_refs_only(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            _local_refs_only(value, f"{where}/{index}")


def _validator(schema: Any, where: str, schema_dir: Path) -> Any:
    import jsonschema  # noqa: PLC0415 - only the host validates; workers never load it

    if isinstance(schema, str):
        path = schema_dir / Path(schema).name
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DescriptorError(
                f"{where}: schema reference {schema!r} is not in {schema_dir} ({error})"
            ) from error
    if not isinstance(schema, dict | bool):
        raise DescriptorError(f"{where}: a schema is an object (or a reference string)")
    _local_refs_only(schema, where)
    document: Any = schema  # an object, or true/false
    cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(document)
    except jsonschema.SchemaError as error:
        raise DescriptorError(f"{where}: not a valid JSON Schema: {error.message}") from error
    return cls(document, format_checker=jsonschema.FormatChecker())


class Cel:
    """A property's `validation.celExpression`, with the operator's meaning (core/contract.py):
    CEL over `self`, the value, that must be true. The host checks every call's values, so a
    value a call passes (not only the configuration the operator checked) obeys it too."""

    def __init__(self, expression: str, where: str) -> None:
        try:
            import celpy  # noqa: PLC0415 - only for descriptors that use CEL
            from celpy.adapter import json_to_cel  # noqa: PLC0415
            from celpy.celparser import CELParseError  # noqa: PLC0415
        except ImportError as error:
            raise DescriptorError(
                f"{where}.validation.celExpression: this host has no CEL engine ({error}); it "
                "refuses to serve a rule it cannot check"
            ) from error
        self.expression, self._to_cel, self._celpy = expression, json_to_cel, celpy
        environment = celpy.Environment()
        try:
            self.program = environment.program(environment.compile(expression))
        except CELParseError as error:
            raise DescriptorError(
                f"{where}.validation.celExpression does not compile: {str(error).splitlines()[0]}"
            ) from error

    def problem(self, value: Any) -> str | None:
        """Why `value` fails the expression, or None."""
        try:
            result = self.program.evaluate({"self": self._to_cel(value)})
        except (self._celpy.evaluation.CELEvalError, TypeError, ValueError) as error:
            said = str(error.args[0] if error.args else error).split(" (in activation", 1)[0]
            return f"validation.celExpression could not be evaluated: {said[:300]}"
        if not isinstance(result, self._celpy.celtypes.BoolType | bool):
            return f"validation.celExpression {self.expression!r} is not a boolean"
        return None if bool(result) else f"fails validation.celExpression {self.expression!r}"


def _property_schema(spec: Mapping[str, Any], where: str) -> JsonObject:
    kind = spec.get("type")
    if kind not in PROPERTY_TYPES:
        raise DescriptorError(f"{where}.type: {kind!r} is not one of {sorted(PROPERTY_TYPES)}")
    schema: JsonObject = {"type": PROPERTY_TYPES[kind]}
    rules = spec.get("validation") or {}
    if not isinstance(rules, dict):
        raise DescriptorError(f"{where}.validation: not an object")
    low, high = rules.get("min"), rules.get("max")
    if kind in ("number", "integer"):
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
    elif kind in SIZE_KEYWORDS:
        at_least, at_most = SIZE_KEYWORDS[kind]
        if low is not None:
            schema[at_least] = max(0, math.ceil(low))
        if high is not None:
            schema[at_most] = max(0, math.floor(high))
    if rules.get("pattern") is not None and kind == "string":
        schema["pattern"] = rules["pattern"]
    if rules.get("enum") is not None:
        schema["enum"] = rules["enum"]
    return schema  # validation.celExpression: Cel, beside the schema


def _port(spec: Any, where: str, schema_dir: Path) -> Port:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise DescriptorError(f"{where}: a port is an object with a name")
    if "schema" not in spec:
        raise DescriptorError(f"{where}: the port has no schema")
    return Port(
        name=spec["name"],
        validator=_validator(spec["schema"], f"{where}.schema", schema_dir),
        required=bool(spec.get("required", True)),
        default=spec.get("defaultValue"),
        has_default=spec.get("defaultValue") is not None,
    )


def _timeout_ms(spec: Mapping[str, Any]) -> int:
    override = os.environ.get("WAYANG_TIMEOUT_MS")
    if override:
        try:
            value = int(override)
        except ValueError as error:
            raise DescriptorError(f"WAYANG_TIMEOUT_MS={override!r} is not an integer") from error
    else:
        profile = spec.get("resourceProfile") or {}
        value = profile.get("timeout", DEFAULT_TIMEOUT_MS)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DescriptorError(f"timeout {value!r} ms is not a positive integer")
    return value


def _document(path: Path) -> JsonObject:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DescriptorError(f"cannot read the descriptor {path}: {error.strerror}") from error
    except ValueError as error:
        raise DescriptorError(f"the descriptor {path} is not JSON: {error}") from error
    if isinstance(document, dict) and document.get("kind") == "Plugin":
        document = document.get("spec")
    if not isinstance(document, dict):
        raise DescriptorError(f"the descriptor {path} is not a JSON object")
    if not isinstance(document.get("id"), str) or not document["id"]:
        raise DescriptorError("descriptor: id is missing")
    return document


WASM = "<wasm>:"
"""The entrypoint of a `wasm` plugin as the workers get it: `<wasm>:<export>` (no Python module
has that name), run by wayang_wasm.py on wasmtime."""
JVM = "<jvm>:"
"""The entrypoint of a `jar` or `maven` plugin as the workers get it: `<jvm>:<class>`, run by
wayang_jvm.py in a JVM of the worker's."""
EXECUTORS = {
    WASM: ("WAYANG_WASM_EXPORT", "wayang_wasm:execute"),
    JVM: ("WAYANG_JVM_CLASS", "wayang_jvm:execute"),
}
"""For a plugin that is not Python: the variable the worker passes the rest of the entrypoint
in, and the host's executor the worker runs instead of a plugin module."""
_JAVA_PART = r"(?:[^\W\d]|\$)[\w$]*"
JAVA_CLASS = re.compile(rf"{_JAVA_PART}(?:\.{_JAVA_PART})*")
"""A Java binary class name: dotted identifiers, `$` for a nested class (com.example.A$B)."""


def _entrypoint(document: JsonObject) -> str:
    implementation = document.get("implementation") or {}
    entrypoint = implementation.get("entrypoint") if isinstance(implementation, dict) else None
    if isinstance(implementation, dict) and implementation.get("type") == "wasm":
        export = entrypoint or "execute"
        if not isinstance(export, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", export):
            raise DescriptorError(
                f"implementation.entrypoint {export!r} is not the name of the module's exported "
                "function (e.g. execute)"
            )
        return WASM + export
    if isinstance(implementation, dict) and implementation.get("type") in ("jar", "maven"):
        if not isinstance(entrypoint, str) or not JAVA_CLASS.fullmatch(entrypoint):
            raise DescriptorError(
                f"implementation.entrypoint {entrypoint!r} is not the binary name of the "
                "plugin's class (e.g. com.example.MyPlugin), which a jar or maven plugin needs"
            )
        return JVM + entrypoint
    module, _, attribute = (entrypoint or "").partition(":")
    if not isinstance(entrypoint, str) or not module or not attribute:
        raise DescriptorError(
            f"implementation.entrypoint {entrypoint!r} is not 'module:function' "
            "(e.g. my_plugin:execute)"
        )
    return entrypoint


def _from_secret(name: str, value: Any, typed: str, secrets_dir: Path) -> Any:
    """A configuration value, read from its mounted Secret if it refers to one."""
    ref = value.get("secretKeyRef") if isinstance(value, dict) and len(value) == 1 else None
    if not isinstance(ref, dict) or set(ref) != {"name", "key"}:
        return value
    path = secrets_dir / "configuration" / str(ref["name"]) / str(ref["key"])
    try:
        text = path.read_text()
    except OSError as error:
        raise DescriptorError(
            f"configuration.{name}: key {ref['key']!r} of Secret {ref['name']!r} is not mounted "
            f"at {path} ({error.strerror})"
        ) from error
    if typed == "string":
        return text
    try:
        return json.loads(text)
    except ValueError as error:
        raise DescriptorError(
            f"configuration.{name}: key {ref['key']!r} of Secret {ref['name']!r} is not JSON "
            f"for a property of type {typed}"
        ) from error


def _properties(
    document: JsonObject, schema_dir: Path, secrets_dir: Path
) -> tuple[tuple[Property, ...], JsonObject]:
    """The properties and their values before a request's: defaults, then configuration (with
    the values of Secrets read from where they are mounted)."""
    properties: list[Property] = []
    types: dict[str, str] = {}
    values: JsonObject = {}
    for i, prop in enumerate(document.get("properties") or []):
        where = f"properties[{i}]"
        if not isinstance(prop, dict) or not isinstance(prop.get("name"), str):
            raise DescriptorError(f"{where}: a property is an object with a name")
        schema = _property_schema(prop, where)
        expression = (prop.get("validation") or {}).get("celExpression")
        properties.append(
            Property(
                name=prop["name"],
                validator=_validator(schema, where, schema_dir),
                required=bool(prop.get("required", False)),
                sensitive=bool(prop.get("sensitive", False)),
                cel=Cel(expression, where) if isinstance(expression, str) else None,
            )
        )
        types[prop["name"]] = str(prop.get("type", ""))
        if prop.get("default") is not None:
            values[prop["name"]] = prop["default"]
    configuration = document.get("configuration") or {}
    if not isinstance(configuration, dict):
        raise DescriptorError("configuration: not an object")
    for name, value in configuration.items():
        values[name] = _from_secret(name, value, types.get(name, ""), secrets_dir)
    return tuple(properties), values


def _secret_paths(document: JsonObject, secrets_dir: Path) -> tuple[Path, ...]:
    configuration = document.get("configuration")
    paths = []
    for value in (configuration if isinstance(configuration, dict) else {}).values():
        ref = value.get("secretKeyRef") if isinstance(value, dict) and len(value) == 1 else None
        if isinstance(ref, dict) and set(ref) == {"name", "key"}:
            paths.append(secrets_dir / "configuration" / str(ref["name"]) / str(ref["key"]))
    return tuple(sorted(set(paths)))


def fingerprint(paths: Sequence[Path]) -> str:
    """What the mounted Secret keys hold now (a digest; a missing key counts as such)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def load_descriptor(path: Path, schema_dir: Path, secrets_dir: Path | None = None) -> Plugin:
    """The plugin a descriptor describes, with its validators (DescriptorError: why not)."""
    secrets_dir = secrets_dir or Path(os.environ.get("WAYANG_SECRETS_DIR", SECRETS_DIR))
    document = _document(path)
    entrypoint = _entrypoint(document)
    inputs_spec = document.get("inputs")
    if not isinstance(inputs_spec, list):
        raise DescriptorError("inputs: not a list of ports")
    inputs = tuple(_port(port, f"inputs[{i}]", schema_dir) for i, port in enumerate(inputs_spec))
    names = [port.name for port in inputs]
    if len(set(names)) != len(names):
        raise DescriptorError(f"inputs: port names repeat ({', '.join(names)})")
    outputs = document.get("outputs")
    if not isinstance(outputs, dict) or not isinstance(outputs.get("error"), dict):
        raise DescriptorError("outputs: both outputs.success and outputs.error are required")
    success = _port(outputs.get("success"), "outputs.success", schema_dir)
    error_port = outputs["error"].get("name")
    if not isinstance(error_port, str) or not error_port:
        raise DescriptorError("outputs.error: the port has no name")
    properties, values = _properties(document, schema_dir, secrets_dir)
    configured = frozenset(document.get("configuration") or {})
    retry = (document.get("errorHandling") or {}).get("retryPolicy") or {}
    max_attempts = retry.get("maxAttempts") if isinstance(retry, dict) else None
    return Plugin(
        id=document["id"],
        version=str(document.get("version", "")),
        entrypoint=entrypoint,
        timeout=_timeout_ms(document) / 1000,
        inputs=inputs,
        success=success,
        error_port=error_port,
        properties=properties,
        values=values,
        max_attempts=max_attempts if isinstance(max_attempts, int) else None,
        configured=configured,
        breaker=BreakerConfig.of((document.get("errorHandling") or {}).get("circuitBreaker")),
        secret_files=_secret_paths(document, secrets_dir),
    )


# ------------------------------------------------------------------------------------------------
# Validation


def _field(prefix: str, path: Iterator[Any] | Any) -> str:
    text = prefix
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


class Invalid(Exception):  # noqa: N818 - an outcome, not a failure of the host
    """Data that does not match its schema: `field` names the first bad field."""

    def __init__(self, field: str, message: str, errors: list[JsonObject], stage: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.errors, self.stage = field, errors, stage


def check(validator: Any, instance: Any, prefix: str, stage: str, *, hide: bool = False) -> None:
    """Raise Invalid with every schema violation of `instance`, each named by its field path."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.path), list(e.path)))
    if not errors:
        return
    found: list[JsonObject] = []
    for error in errors[:DETAIL_ERRORS_MAX]:
        name = _field(prefix, error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [key for key in error.validator_value if key not in error.instance]
            if missing:
                name = _field(name, [missing[0]])
        message = "invalid value (hidden: the property is sensitive)" if hide else error.message
        found.append({"field": name, "message": message, "keyword": str(error.validator)})
    first = found[0]
    raise Invalid(first["field"], first["message"], found, stage)


def _missing(field: str, what: str, stage: str) -> Invalid:
    return Invalid(field, what, [{"field": field, "message": what, "keyword": "required"}], stage)


def check_inputs(plugin: Plugin, given: JsonObject) -> JsonObject:
    """The inputs with port defaults applied, each checked against its port's schema."""
    known = {port.name for port in plugin.inputs}
    for name in given:
        if name not in known:
            raise _missing(
                f"inputs.{name}",
                f"not an input port of this plugin (ports: {', '.join(sorted(known)) or 'none'})",
                "input",
            )
    inputs: JsonObject = {}
    for port in plugin.inputs:
        if port.name in given:
            inputs[port.name] = given[port.name]
        elif port.has_default:
            inputs[port.name] = port.default
        elif port.required:
            raise _missing(f"inputs.{port.name}", "required input is missing", "input")
        else:
            continue
        check(port.validator, inputs[port.name], f"inputs.{port.name}", "input")
    return inputs


def check_properties(plugin: Plugin, given: JsonObject) -> JsonObject:
    """Defaults and configuration, then the request's values for the properties the
    configuration does not set; each checked against its schema."""
    known = {prop.name: prop for prop in plugin.properties}
    for name in sorted(set(given) & plugin.configured):
        raise _missing(
            f"properties.{name}",
            "set by the plugin's configuration (spec.configuration), which a call cannot override",
            "properties",
        )
    values = {**plugin.values, **given}
    for name in values:
        if name not in known:
            raise _missing(
                f"properties.{name}",
                f"not a property of this plugin (properties: {', '.join(sorted(known)) or 'none'})",
                "properties",
            )
    for prop in plugin.properties:
        if values.get(prop.name) is None:
            values.pop(prop.name, None)
            if prop.required:
                raise _missing(
                    f"properties.{prop.name}", "required property has no value", "properties"
                )
            continue
        path = f"properties.{prop.name}"
        check(prop.validator, values[prop.name], path, "properties", hide=prop.sensitive)
        problem = prop.cel.problem(values[prop.name]) if prop.cel is not None else None
        if problem is not None:
            message = (
                "invalid value (hidden: the property is sensitive)"
                if prop.sensitive
                else (f"{values[prop.name]!r} {problem}")
            )
            raise Invalid(
                path,
                message,
                [{"field": path, "message": message, "keyword": "celExpression"}],
                "properties",
            )
    return values


# ------------------------------------------------------------------------------------------------
# Workers: the plugin's code runs only here


def _resolve(entrypoint: str) -> Callable[..., Any]:
    module_name, _, attribute = entrypoint.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if inspect.isclass(target):  # a plugin class: one instance, its execute method
        instance: Any = target()
        target = instance.execute
    if not callable(target):
        raise TypeError(f"{entrypoint} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


def _where(error: BaseException) -> str | None:
    """file:line where `error` happened (for a SyntaxError: in the file that does not parse)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _failure(error: BaseException) -> JsonObject:
    """What the host needs of an exception, as JSON. The typed-error attributes of
    lib/wayang_plugin.py (`error_type`, `suggested_action`, `details`) are read from any
    exception: the host judges them, the worker only passes them on."""
    details = getattr(error, "details", None)
    try:
        details = json.loads(json.dumps(details, allow_nan=False)) if details else None
    except (TypeError, ValueError):
        details = {"unserializable": _cut(repr(details), MESSAGE_MAX)}
    return {
        "ok": False,
        "exceptionType": type(error).__qualname__,
        "exceptionModule": type(error).__module__,
        "message": str(error),
        "where": _where(error),
        "traceback": "".join(traceback.format_exception(error)),
        "retryable": bool(getattr(error, "retryable", False)),
        "errorType": _text_or_none(getattr(error, "error_type", None)),
        "suggestedAction": _text_or_none(getattr(error, "suggested_action", None)),
        "details": details if isinstance(details, dict) else None,
        "endsWorker": getattr(error, "ends_worker", False) is True,
    }


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def worker_main(conn: Connection, plugin_path: str, entrypoint: str) -> None:
    """A worker: import the plugin, say whether that worked, then run calls until the pipe closes.

    The worker leads its own process group, so a timeout kills whatever the plugin started too.
    The plugin's prints go to stderr: stdout carries the host's JSON logs only.
    """
    with contextlib.suppress(OSError):
        os.setsid()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
    marker = next((marker for marker in EXECUTORS if entrypoint.startswith(marker)), None)
    if marker is not None:
        # the plugin is not Python (a wasm module, a jar): the worker runs the host's executor,
        # with the host's libraries (wasmtime), and the plugin's folder holds no Python
        variable, executor = EXECUTORS[marker]
        os.environ[variable] = entrypoint[len(marker) :]
        entrypoint = executor
        sys.path[:] = [str(HERE), str(LIB), str(DEPS), *(p for p in sys.path if p != plugin_path)]
    else:
        sys.path[:] = [plugin_path, str(LIB), *(p for p in sys.path if p != str(DEPS))]
    try:
        function = _resolve(entrypoint)
    except BaseException as error:
        conn.send_bytes(json.dumps({"ready": False, **_failure(error)}).encode())
        return
    conn.send_bytes(b'{"ready": true}')
    import wayang_plugin  # noqa: PLC0415 - from LIB, on the path only now

    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        wayang_plugin.CALL_TRACEPARENT.set(request.get("traceparent"))
        wayang_plugin.CALL_TIMEOUT.set(request.get("timeout"))
        failure: JsonObject = {}
        try:
            result = function(request["inputs"], request["properties"])
            if inspect.isawaitable(result):
                result = asyncio.run(_awaited(result))
            try:
                reply = json.dumps({"ok": True, "output": result}, allow_nan=False)
            except (TypeError, ValueError) as error:
                raise TypeError(f"the plugin's result is not JSON: {error}") from error
        except BaseException as error:
            failure = _failure(error)
            reply = json.dumps(failure)
        conn.send_bytes(reply.encode())
        if failure.get("endsWorker"):
            return  # the executor lost what the plugin ran on (a JVM): a new worker serves next


async def _awaited(result: Any) -> Any:
    return await result


@dataclass
class Reply:
    """What a worker made of one call."""

    kind: str
    """ok | raised | timeout | crash | busy | load"""
    data: JsonObject = field(default_factory=dict)


def _context() -> BaseContext:
    """forkserver (fast, clean forks from a process with no threads), which needs a writable
    temporary directory for its socket; spawn when there is none.

    A forkserver child still runs this file again as `__mp_main__` (Python 3.11 does not pass
    the main path to the server), so the server preloads the modules imported above: the child
    inherits them and only re-defines this file's functions.
    """
    try:
        tempfile.gettempdir()
    except FileNotFoundError:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", *WORKER_PRELOAD])
    return context


class Worker:
    def __init__(self, context: BaseContext, plugin_path: str, entrypoint: str) -> None:
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(child, plugin_path, entrypoint), daemon=False
        )
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> str | None:
        """None once the plugin is imported; otherwise why it is not."""
        try:
            if not self.conn.poll(timeout):
                self.kill()
                return f"importing the plugin took longer than {timeout:.0f} s"
            message = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            code = self._exit_code()
            return f"the worker exited with {describe_exit(code)} while importing the plugin"
        if message.get("ready"):
            return None
        self.stop()
        where = f" (at {message['where']})" if message.get("where") else ""
        return (
            f"the plugin does not load: {message.get('exceptionType')}: "
            f"{message.get('message')}{where}"
        )

    def call(self, request: bytes, timeout: float) -> Reply:
        try:
            self.conn.send_bytes(request)
            if not self.conn.poll(timeout):
                self.kill()
                return Reply("timeout")
            message: JsonObject = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return Reply("crash", {"exitCode": self._exit_code()})
        return Reply("ok" if message.get("ok") else "raised", message)

    def alive(self) -> bool:
        return self.process.is_alive() and not self.conn.closed

    def _exit_code(self) -> int | None:
        self.process.join(2)
        if self.process.exitcode is None:
            self.kill()
        self.conn.close()
        return self.process.exitcode

    def kill(self) -> None:
        """SIGKILL the worker's process group (the worker and anything it started)."""
        pid = self.process.pid
        if pid is not None and self.process.exitcode is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                with contextlib.suppress(OSError):
                    self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        """Close the pipe (the worker returns) and make sure it is gone."""
        self.conn.close()
        self.process.join(1)
        if self.process.exitcode is None:
            self.kill()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


class Pool:
    """At most `size` executions at once; with `reuse`, warm workers wait for calls."""

    def __init__(self, plugin: Plugin, plugin_path: str, size: int, reuse: bool) -> None:
        self.plugin, self.plugin_path, self.size, self.reuse = plugin, plugin_path, size, reuse
        self.context = _context()
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._all: set[Worker] = set()
        """Every worker not known to be gone, so that close() leaves none behind."""
        self.started = 0

    def _start(self) -> tuple[Worker | None, str | None]:
        if self._closed:
            return None, "the host is stopping"
        try:
            worker = Worker(self.context, self.plugin_path, self.plugin.entrypoint)
        except (OSError, ValueError) as error:
            return None, f"cannot start a worker process: {error}"
        with self._lock:
            self.started += 1
            self._all = {w for w in self._all if w.process.exitcode is None} | {worker}
            closed = self._closed
        if closed:
            worker.kill()
            return None, "the host is stopping"
        problem = worker.wait_ready(STARTUP_TIMEOUT)
        return (None, problem) if problem else (worker, None)

    def probe(self) -> str | None:
        """Start one worker (the plugin imports, the entrypoint exists); keep it when reusing."""
        worker, problem = self._start()
        if worker is not None:
            self._put(worker)
            if self.reuse:
                for _ in range(self.size - 1):
                    self._replenish()
        return problem

    def _put(self, worker: Worker) -> None:
        with self._lock:
            if self.reuse and not self._closed and len(self._idle) < self.size:
                self._idle.append(worker)
                return
        worker.stop()

    def _replenish(self) -> None:
        def start() -> None:
            worker, problem = self._start()
            if worker is not None:
                self._put(worker)
            else:
                log("worker-start-failed", "warning", reason=problem, pluginId=self.plugin.id)

        threading.Thread(target=start, name="replenish", daemon=True).start()

    def run(self, request: bytes, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout
        if not self._slots.acquire(timeout=timeout):
            return Reply("busy")
        try:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.stop()
                worker, problem = self._start()
                if worker is None:
                    return Reply("load", {"message": problem})
            reply = worker.call(request, max(0.001, deadline - time.monotonic()))
            ended = reply.data.get("endsWorker") is True
            if worker.alive() and reply.kind in ("ok", "raised") and not ended:
                self._put(worker)
            else:
                worker.kill()
                if self.reuse:
                    self._replenish()
            return reply
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._idle, workers = [], list(self._all)
        for worker in workers:
            worker.kill()


# ------------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * len(BUCKETS)
        self.total_seconds = 0.0
        self.count = 0
        self.reloads = {"reloaded": 0, "failed": 0}

    def reloaded(self, outcome: str) -> None:
        with self._lock:
            self.reloads[outcome] += 1

    def observe(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            self.count += 1
            self.total_seconds += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1

    def render(self, ready: bool, workers_started: int, breaker: str) -> str:
        with self._lock:
            lines = [
                "# HELP wayang_plugin_executions_total Execute requests answered, by outcome.",
                "# TYPE wayang_plugin_executions_total counter",
            ]
            lines += [
                f'wayang_plugin_executions_total{{outcome="{name}"}} {value}'
                for name, value in self.outcomes.items()
            ]
            lines += [
                "# HELP wayang_plugin_execution_seconds Time to answer an execute request.",
                "# TYPE wayang_plugin_execution_seconds histogram",
            ]
            lines += [
                f'wayang_plugin_execution_seconds_bucket{{le="{bound}"}} {count}'
                for bound, count in zip(BUCKETS, self.buckets, strict=True)
            ]
            lines += [
                f'wayang_plugin_execution_seconds_bucket{{le="+Inf"}} {self.count}',
                f"wayang_plugin_execution_seconds_sum {self.total_seconds!r}",
                f"wayang_plugin_execution_seconds_count {self.count}",
            ]
        lines += [
            "# HELP wayang_plugin_ready Whether the plugin is loaded and serving (1) or not (0).",
            "# TYPE wayang_plugin_ready gauge",
            f"wayang_plugin_ready {int(ready)}",
            "# HELP wayang_plugin_workers_started_total Worker processes started.",
            "# TYPE wayang_plugin_workers_started_total counter",
            f"wayang_plugin_workers_started_total {workers_started}",
            "# HELP wayang_plugin_configuration_reloads_total Reloads of Secret-sourced "
            "configuration, by outcome.",
            "# TYPE wayang_plugin_configuration_reloads_total counter",
            *(
                f'wayang_plugin_configuration_reloads_total{{outcome="{outcome}"}} {count}'
                for outcome, count in self.reloads.items()
            ),
            "# HELP wayang_plugin_call_breaker The call-level circuit breaker's state (1 = in it).",
            "# TYPE wayang_plugin_call_breaker gauge",
        ]
        lines += [
            f'wayang_plugin_call_breaker{{state="{state}"}} {int(state == breaker)}'
            for state in ("closed", "open", "half_open")
        ]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# The host


class RequestError(ValueError):
    """A request body that is not an execute request (HTTP 400)."""


@dataclass(frozen=True)
class Request:
    inputs: JsonObject
    properties: JsonObject
    run_id: str | None
    attempt: int | None
    """Which attempt of the caller's retry policy this is (0-based; the engine SDK sends it):
    carried into the call's ErrorPayload, log line and span."""


def parse_request(body: bytes) -> Request:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"the request body is not JSON: {error}") from error
    if not isinstance(request, dict):
        raise RequestError(
            'the request body must be a JSON object: {"inputs": {...}, "properties": {...}, '
            '"runId": "<uuid>"}'
        )
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise RequestError(
            f"unknown request field(s) {', '.join(unknown)}: expected inputs, properties, runId, "
            "attempt"
        )
    inputs = request.get("inputs", {})
    if not isinstance(inputs, dict):
        raise RequestError("inputs must be a JSON object mapping input port names to values")
    properties = request.get("properties") or {}
    if not isinstance(properties, dict):
        raise RequestError("properties must be a JSON object mapping property names to values")
    run_id = request.get("runId")
    if run_id is not None:
        try:
            run_id = str(uuid.UUID(run_id)) if isinstance(run_id, str) else None
        except ValueError:
            run_id = None
        if run_id is None:
            raise RequestError(f"runId must be a UUID string, got {request['runId']!r}")
    attempt = request.get("attempt")
    if attempt is not None and (
        not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0
    ):
        raise RequestError(f"attempt must be a non-negative integer, got {attempt!r}")
    return Request(inputs, properties, run_id, attempt)


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        log("bad-setting", "warning", setting=name, value=value, using=default)
        return default


TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
TRACE_EXPORTERS = ("otlp", "console")


def valid_traceparent(header: str | None) -> str | None:
    """A W3C traceparent header (version 00, ids not all zero), or None: an invalid one is
    ignored, as the specification asks."""
    found = TRACEPARENT.fullmatch((header or "").strip())
    if found is None or set(found[1]) == {"0"} or set(found[2]) == {"0"}:
        return None
    return found[0]


class HostTracing:
    """OpenTelemetry for the host, on only when the standard variables ask (the operator's rule,
    wayang_operator/tracing.py): an OTLP endpoint or OTEL_TRACES_EXPORTER=otlp|console, and not
    OTEL_SDK_DISABLED=true. The SDK is imported on the first call that needs it (a host without
    tracing pays nothing); the OTLP exporter speaks http/protobuf and reads its own variables.
    The service is OTEL_SERVICE_NAME, else the plugin's id."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        chosen = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        exporter = chosen or ("otlp" if endpoint else "")
        disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        self.exporter = exporter if exporter in TRACE_EXPORTERS and not disabled else None
        self.named = bool(environ.get("OTEL_SERVICE_NAME"))
        self._tracer: Any = None
        self._provider: Any = None
        self._failed = False
        self._lock = threading.Lock()

    def tracer(self, service: str) -> Any:
        """The tracer, or None when tracing is off or cannot be had (logged once)."""
        if self.exporter is None or self._failed:
            return None
        with self._lock:
            if self._tracer is None and not self._failed:
                self._start(service)
        return self._tracer

    def _start(self, service: str) -> None:
        try:
            from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - optional
            from opentelemetry.sdk.trace import TracerProvider, export  # noqa: PLC0415

            if self.exporter == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                    OTLPSpanExporter,
                )

                exporter: Any = OTLPSpanExporter()
            else:
                exporter = export.ConsoleSpanExporter(out=sys.stderr)  # stdout: the JSON logs
        except ImportError as error:
            self._failed = True
            log("tracing-unavailable", "warning", exporter=self.exporter, reason=str(error))
            return
        resource = Resource.create({} if self.named else {"service.name": service})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(export.BatchSpanProcessor(exporter))
        self._provider = provider
        self._tracer = provider.get_tracer("wayang.runtime.python", VERSION)
        log("tracing", exporter=self.exporter, service=resource.attributes.get("service.name"))

    def shutdown(self) -> None:
        """Export what is left (at SIGTERM)."""
        if self._provider is not None:
            self._provider.shutdown()


@dataclass
class CallTrace:
    """The trace of one execute call: a SERVER span under the caller's traceparent, and an
    INTERNAL span around the plugin's run whose traceparent the plugin gets
    (wayang_plugin.traceparent()). Without a tracer the caller's traceparent goes to the plugin
    as it came."""

    tracer: Any
    parent: str | None
    attempt: int | None = None
    """The request's attempt number, once parsed."""

    @contextlib.contextmanager
    def server(self, name: str) -> Iterator[Any]:
        if self.tracer is None:
            yield None
            return
        from opentelemetry.trace import SpanKind  # noqa: PLC0415 - loaded with the tracer
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        context = (
            TraceContextTextMapPropagator().extract({"traceparent": self.parent})
            if self.parent
            else None
        )
        with self.tracer.start_as_current_span(
            name, context=context, kind=SpanKind.SERVER, record_exception=False
        ) as span:
            yield span

    @contextlib.contextmanager
    def plugin(self, entrypoint: str) -> Iterator[str | None]:
        if self.tracer is None:
            yield self.parent
            return
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )

        with self.tracer.start_as_current_span(f"wayang.plugin {entrypoint}"):
            carrier: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(carrier)
            yield carrier.get("traceparent")

    def finish(self, span: Any, outcome: str, response: JsonObject, status: int) -> None:
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

        error = response.get("error") or {}
        span.set_attribute("wayang.outcome", outcome)
        if self.attempt is not None:
            span.set_attribute("wayang.attempt", self.attempt)
        span.set_attribute("http.response.status_code", status)
        if response.get("runId"):
            span.set_attribute("wayang.run_id", str(response["runId"]))
        if response.get("port"):
            span.set_attribute("wayang.port", str(response["port"]))
        if error:
            span.set_attribute("error.type", str(error.get("type")))
            span.set_status(Status(StatusCode.ERROR, str(error.get("message", ""))[:300]))

    def ids(self, span: Any) -> dict[str, str]:
        """traceId and spanId for the call's log line (the caller's trace without a span)."""
        if span is not None:
            context = span.get_span_context()
            return {"traceId": f"{context.trace_id:032x}", "spanId": f"{context.span_id:016x}"}
        if self.parent:
            return {"traceId": self.parent.split("-")[1]}
        return {}


def _error_enums(schema_dir: Path) -> tuple[frozenset[str], frozenset[str]]:
    """The ErrorPayload types and suggested actions a plugin may choose, from the schema the
    host validates error ports against (one source, not a copy of the operator's enums). Without
    the schema a plugin chooses nothing: every exception is a ToolError."""
    try:
        defs = json.loads((schema_dir / "ErrorPayload.schema.json").read_text())["$defs"]
        return frozenset(defs["ErrorType"]["enum"]), frozenset(defs["SuggestedAction"]["enum"])
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset(), frozenset()


class Host:
    def __init__(self, descriptor: Path, plugin_path: str, schema_dir: Path) -> None:
        self.descriptor, self.plugin_path, self.schema_dir = descriptor, plugin_path, schema_dir
        self.metrics = Metrics()
        self.plugin: Plugin | None = None
        self.pool: Pool | None = None
        self.reason: str | None = "starting: loading the descriptor"
        self.ready = False
        self._failed_at: float | None = None
        self.draining = False
        self._loading = threading.Lock()
        self.loaded = threading.Event()
        """Set once the first load has finished (well or not): calls wait for it."""
        self.error_types, self.suggested_actions = _error_enums(schema_dir)
        self.health = CallHealth(BreakerConfig())
        self.tracing = HostTracing(os.environ)
        self._secrets_seen = ""
        self.size = max(1, _int_env("WAYANG_WORKERS", 2))
        self.reuse = os.environ.get("WAYANG_REUSE_WORKERS", "true").lower() not in (
            "0",
            "false",
            "no",
        )

    @property
    def origin(self) -> str:
        return self.plugin.id if self.plugin else ORIGIN

    def load(self) -> None:
        """Load the descriptor and probe the plugin in a worker; never raises."""
        if not self._loading.acquire(blocking=False):
            return
        try:
            if self.plugin is None:
                self.plugin = load_descriptor(self.descriptor, self.schema_dir)
                self.pool = Pool(self.plugin, self.plugin_path, self.size, self.reuse)
                self.health = CallHealth(self.plugin.breaker)
                self._secrets_seen = fingerprint(self.plugin.secret_files)
                self.reason = "starting: importing the plugin module"
            assert self.pool is not None
            problem = self.pool.probe()
        except DescriptorError as error:
            problem = f"descriptor: {error}"
        except Exception as error:
            problem = f"{type(error).__name__}: {error}"
        finally:
            self._loading.release()
        self.ready, self.reason = problem is None, problem
        self._failed_at = None if problem is None else time.monotonic()
        self.loaded.set()
        log(
            "ready" if problem is None else "not-ready",
            "info" if problem is None else "error",
            pluginId=self.plugin.id if self.plugin else None,
            reason=problem,
            entrypoint=self.plugin.entrypoint if self.plugin else None,
            workers=self.size,
            reuseWorkers=self.reuse,
        )

    def reload_secrets(self) -> None:
        """Take up new values of the Secret keys the configuration reads, which the kubelet
        updates in the pod's mounted volumes when someone edits the Secret (a change of the
        Plugin's own configuration rolls the pods instead). The switch is atomic: a call sees
        the old values or the new ones. New values that cannot be read keep the previous ones
        serving (logged, counted): a broken Secret edit does not take a serving plugin down,
        and each call still validates the values it gets."""
        plugin = self.plugin
        if plugin is None or not plugin.secret_files or not self.ready:
            return
        now = fingerprint(plugin.secret_files)
        if now == self._secrets_seen:
            return
        self._secrets_seen = now
        try:
            fresh = load_descriptor(self.descriptor, self.schema_dir)
        except DescriptorError as error:
            self.metrics.reloaded("failed")
            log("configuration-reload-failed", "warning", reason=str(error))
            return
        self.plugin = replace(plugin, values=fresh.values)
        self.metrics.reloaded("reloaded")
        log("configuration-reloaded", secretKeys=len(plugin.secret_files))

    def watch_secrets(self, interval: float) -> None:
        while not self.draining:
            time.sleep(interval)
            self.reload_secrets()

    def stopping(self) -> None:
        """Report not ready from now on, so the Service stops routing here, while the calls
        already routed are still served (the pod is going away)."""
        self.draining = True

    def retry_load(self) -> None:
        """After a failed load, try again in the background, at most every RELOAD_INTERVAL."""
        failed = self._failed_at
        if not self.ready and failed is not None and time.monotonic() - failed > RELOAD_INTERVAL:
            self._failed_at = time.monotonic()
            threading.Thread(target=self.load, name="reload", daemon=True).start()

    def readiness(self) -> tuple[int, JsonObject]:
        if self.draining:
            return 503, {"status": "not ready", "reason": "stopping"}
        self.retry_load()
        failing = self.health.unready() if self.ready else None
        if failing is not None:
            return 503, {"status": "not ready", "reason": failing}
        if self.ready and self.plugin is not None:
            return 200, {
                "status": "ready",
                "pluginId": self.plugin.id,
                "version": self.plugin.version,
                "entrypoint": self.plugin.entrypoint,
            }
        return 503, {"status": "not ready", "reason": self.reason}

    def execute(self, body: bytes, traceparent: str | None = None) -> tuple[int, JsonObject]:
        """One call, a SERVER span (a child of `traceparent`, the caller's) when tracing is on."""
        trace = CallTrace(self.tracing.tracer(self.origin), valid_traceparent(traceparent))
        with trace.server(f"wayang.execute {self.origin}") as span:
            status, response = self._answer(body, trace, span)
        return status, response

    def _answer(self, body: bytes, trace: CallTrace, span: Any) -> tuple[int, JsonObject]:
        started = time.monotonic()
        try:
            status, response, outcome = self._execute(body, started, trace)
        except Exception as bug:  # a bug of the host's: answer, log, and keep serving
            log("host-error", "error", error=repr(bug), traceback=traceback.format_exc())
            status, outcome = 500, "error"
            response = self._fail(
                str(uuid.uuid4()),
                "UnknownError",
                f"the runtime host failed: {type(bug).__name__}: {bug}",
                retryable=True,
                stack=traceback.format_exc(),
            )
        run_id = response.get("runId")
        error = response.get("error") or {}
        if error and trace.attempt is not None:
            error["attempt"] = trace.attempt
        seconds = time.monotonic() - started
        self.metrics.observe(outcome, seconds)
        self.health.record(outcome, error)
        trace.finish(span, outcome, response, status)
        log(
            "execute",
            "info" if outcome == "success" else "warning",
            pluginId=self.origin,
            runId=run_id,
            outcome=outcome,
            status=status,
            port=response.get("port"),
            errorType=error.get("type"),
            durationMs=round(seconds * 1000, 3),
            attempt=trace.attempt,
            **trace.ids(span),
        )
        return status, response

    def _fail(
        self, run_id: str, kind: str, message: str, *, retryable: bool, **extra: Any
    ) -> JsonObject:
        plugin = self.plugin
        payload = error_payload(
            kind, message, origin=self.origin, run_id=run_id, retryable=retryable, **extra
        )
        if retryable and plugin is not None and plugin.max_attempts is not None:
            payload["maxAttempts"] = plugin.max_attempts
        return {"port": plugin.error_port if plugin else "error", "error": payload, "runId": run_id}

    def _execute(
        self, body: bytes, started: float, trace: CallTrace
    ) -> tuple[int, JsonObject, str]:
        try:
            parsed = parse_request(body)
        except RequestError as error:
            payload = error_payload(
                "ValidationError",
                str(error),
                origin=self.origin,
                run_id=None,
                retryable=False,
                details={"stage": "request"},
                suggested="abort",
            )
            return 400, {"error": payload}, "invalid"
        run_id = parsed.run_id or str(uuid.uuid4())
        trace.attempt = parsed.attempt
        self.loaded.wait(DEFAULT_TIMEOUT_MS / 1000)  # a call that comes while the host starts
        self.retry_load()
        plugin, pool = self.plugin, self.pool
        if not self.ready or plugin is None or pool is None:
            reason = self.reason or "the plugin is not loaded"
            starting = reason.startswith("starting")
            failed = self._fail(
                run_id,
                "PluginLoadError",
                f"the plugin is not ready: {reason}",
                retryable=starting,
                details={"reason": reason},
                suggested="retry" if starting else "escalate",
            )
            return 503, failed, "error"
        try:
            inputs = check_inputs(plugin, parsed.inputs)
            properties = check_properties(plugin, parsed.properties)
        except Invalid as invalid:
            return 200, self._invalid(run_id, invalid), "invalid"
        with trace.plugin(plugin.entrypoint) as header:
            request = {
                "inputs": inputs,
                "properties": properties,
                "traceparent": header,
                "timeout": plugin.timeout,
            }
            reply = pool.run(json.dumps(request).encode(), plugin.timeout)
        limit_ms = round(plugin.timeout * 1000)
        if reply.kind == "ok":
            output = reply.data.get("output")
            try:
                check(plugin.success.validator, output, "output", "output")
            except Invalid as invalid:
                return 200, self._invalid(run_id, invalid), "invalid"
            return 200, {"port": plugin.success.name, "output": output, "runId": run_id}, "success"
        if reply.kind == "raised":
            return 200, self._raised(run_id, reply.data), "error"
        if reply.kind in ("timeout", "busy"):
            message = (
                f"the plugin did not answer within its timeout of {limit_ms} ms; its worker was "
                "killed"
                if reply.kind == "timeout"
                else f"no worker became free within the timeout of {limit_ms} ms"
            )
            failed = self._fail(
                run_id,
                "Timeout",
                message,
                retryable=True,
                details={
                    "timeoutMs": limit_ms,
                    "elapsedMs": round((time.monotonic() - started) * 1000),
                    "busy": reply.kind == "busy",
                },
                suggested="retry",
            )
            return 200, failed, "timeout"
        if reply.kind == "load":
            message = str(reply.data.get("message"))
            self.ready, self.reason, self._failed_at = False, message, time.monotonic()
            failed = self._fail(
                run_id,
                "PluginLoadError",
                message,
                retryable=True,
                details={"reason": message},
                suggested="retry",
            )
            return 200, failed, "error"
        code = reply.data.get("exitCode")
        failed = self._fail(
            run_id,
            "UnknownError",
            f"the plugin's worker process died with {describe_exit(code)} during the call; "
            "a new worker serves the next call",
            retryable=True,
            details={"exitCode": code},
            suggested="retry",
        )
        return 200, failed, "crash"

    def _raised(self, run_id: str, data: JsonObject) -> JsonObject:
        """The ErrorPayload of an exception: the type, retryable flag, suggested action and
        details the plugin chose (lib/wayang_plugin.py) when they are the schema's, else a
        ToolError; either way the exception's class, module and message are in the details."""
        kind = f"{data.get('exceptionType')}"
        message = _cut(str(data.get("message")), MESSAGE_MAX)
        details: JsonObject = {
            **(data.get("details") or {}),
            "exceptionType": kind,
            "exceptionModule": data.get("exceptionModule"),
            "exceptionMessage": message,
        }
        typed = data.get("errorType")
        if typed is not None and typed not in self.error_types:
            details["refusedErrorType"] = _cut(typed, 253)
            typed = None
        suggested = data.get("suggestedAction")
        if suggested is not None and suggested not in self.suggested_actions:
            details["refusedSuggestedAction"] = _cut(suggested, 253)
            suggested = None
        return self._fail(
            run_id,
            typed or "ToolError",
            message if typed else f"the plugin raised {kind}: {message}",
            retryable=bool(data.get("retryable")),
            details=details,
            suggested=suggested,
            stack=data.get("traceback"),
        )

    def _invalid(self, run_id: str, invalid: Invalid) -> JsonObject:
        whose = "the plugin's output" if invalid.stage == "output" else "the request"
        return self._fail(
            run_id,
            "ValidationError",
            f"{whose} does not match the schema: {invalid}",
            retryable=False,
            details={"stage": invalid.stage, "field": invalid.field, "errors": invalid.errors},
            suggested="abort" if invalid.stage != "output" else "escalate",
        )


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server_version = f"wayang-runtime-python/{VERSION}"
    host: Host  # set on the subclass made in serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs stay off: /execute logs its own JSON line."""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 405:
            self.send_header("Allow", "POST" if self.path.split("?")[0] == "/execute" else "GET")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, document: JsonObject) -> None:
        self._send(status, json.dumps(document).encode() + b"\n", "application/json")

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path == "/readyz":
            self._json(*self.host.readiness())
        elif path == "/metrics":
            pool = self.host.pool
            text = self.host.metrics.render(
                self.host.ready and self.host.health.unready() is None,
                pool.started if pool else 0,
                self.host.health.state(),
            )
            self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/execute":
            self._json(405, {"message": "use POST /execute"})
        else:
            self._json(404, {"message": f"no such endpoint {path}"})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path != "/execute":
            status = 405 if path in ("/healthz", "/readyz", "/metrics") else 404
            self._json(status, {"message": f"POST {path}: only POST /execute takes a body"})
            return
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            self.close_connection = True
            self._json(411, {"message": "a Content-Length is required (no chunked bodies)"})
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BYTES:
            self.close_connection = True
            message = f"the body must be 0..{MAX_REQUEST_BYTES} bytes (Content-Length {length})"
            self._json(413 if length > 0 else 400, {"message": message})
            return
        body = self.rfile.read(length)
        self._json(*self.host.execute(body, self.headers.get("traceparent")))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """The listen backlog: socketserver's default of 5 overflows as soon as a few clients wait
    for a busy worker pool, and gVisor's network stack answers an overflow with a reset (seen
    with 8 concurrent clients in the workload benchmark)."""


def serve() -> None:
    descriptor = Path(os.environ.get("WAYANG_DESCRIPTOR", "/etc/wayang/plugin.json"))
    plugin_path = os.environ.get("WAYANG_PLUGIN_PATH", "/opt/wayang/plugin")
    schema_dir = Path(os.environ.get("WAYANG_SCHEMA_DIR", "/opt/wayang/schemas"))
    bind = os.environ.get("WAYANG_BIND", "0.0.0.0")  # noqa: S104 - a pod serves its Service
    port = int(os.environ.get("PORT", "8080"))
    host = Host(descriptor, plugin_path, schema_dir)
    handler = type("BoundHandler", (Handler,), {"host": host})
    server = Server((bind, port), handler)
    log(
        "listening",
        address=bind,
        port=server.server_address[1],
        descriptor=str(descriptor),
        pluginPath=plugin_path,
        version=VERSION,
    )

    drain = float(os.environ.get("WAYANG_DRAIN_SECONDS", "0") or 0)

    def stop(signum: int, _frame: Any) -> None:
        log("stopping", signal=signal.Signals(signum).name, drainSeconds=drain)
        host.stopping()

        def shut_down() -> None:
            time.sleep(drain)
            server.shutdown()

        threading.Thread(target=shut_down, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=host.load, name="load", daemon=True).start()
    interval = float(os.environ.get("WAYANG_SECRET_CHECK_SECONDS", "5") or 5)
    watcher = threading.Thread(target=host.watch_secrets, args=(interval,), daemon=True)
    watcher.start()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        if host.pool is not None:
            host.pool.close()
        host.tracing.shutdown()
        log("stopped")


if __name__ == "__main__":
    serve()
