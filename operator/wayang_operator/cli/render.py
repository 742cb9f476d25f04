"""How `kubectl wayang` prints: kubectl's table layout and ages, phases in colour, JSON and YAML.

Pure presentation, no cluster: the commands in `plugins.py` hand it the objects they read. The
conventions are kubectl's, so the output reads like the rest of a kubectl session: upper-case
headers, columns three spaces apart, NAMESPACE only with `-A`, ages as `45s`, `5m10s`, `3h`,
`-o json|yaml` as a `List` that `kubectl apply -f` and `yaml.safe_load` read back. Colour marks
the phase and explain's step markers, and only when stdout is a terminal and NO_COLOR is unset
(https://no-color.org), so pipes, files and CI logs stay plain.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import yaml

from ..api.resources import ConditionType, PluginPhase
from ..core.explain import GATE_ORDER, Explanation, StepState, short_digest

RESET = "\033[0m"
GREEN, YELLOW, RED, DIM = "\033[32m", "\033[33m", "\033[31m", "\033[2m"

PHASE_COLOURS: dict[PluginPhase, str] = {
    PluginPhase.READY: GREEN,
    PluginPhase.PENDING: YELLOW,
    PluginPhase.SCANNING: YELLOW,
    PluginPhase.AWAITING_APPROVAL: YELLOW,
    PluginPhase.DEPLOYING: YELLOW,
    PluginPhase.DEGRADED: YELLOW,
    PluginPhase.INVALID: RED,
    PluginPhase.BLOCKED: RED,
    PluginPhase.REJECTED: RED,
    PluginPhase.REVOKED: RED,
    PluginPhase.UNRESOLVED: RED,
    PluginPhase.QUARANTINED: RED,
    PluginPhase.DISABLED: DIM,
}
"""Green serves, yellow is on its way or needs a decision, red needs a fix, dim is switched off."""

STEP_MARKS: dict[StepState, tuple[str, str]] = {
    StepState.PASSED: ("ok", GREEN),
    StepState.BLOCKED: ("BLOCKED", RED),
    StepState.WAITING: ("WAITING", YELLOW),
    StepState.FOLLOWS: ("-", DIM),
}


def use_colour(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only for a person at a terminal: stdout a TTY, NO_COLOR unset, TERM not dumb."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, colour: str | None, enabled: bool) -> str:
    return f"{colour}{text}{RESET}" if enabled and colour else text


def human_age(created: str | None, now: datetime.datetime) -> str:
    """kubectl's HumanDuration: 45s, 5m10s, 42m, 3h10m, 15h, 3d4h, 120d, 2y30d, 9y."""
    if not created:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "0s"  # clock skew between this machine and the API server
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def _conditions(plugin: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = plugin.get("status") or {}
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def failing_reason(plugin: Mapping[str, Any]) -> str:
    """The reason of the first gate, in gate order, that did not pass ("" when all did)."""
    conditions = _conditions(plugin)
    for kind in GATE_ORDER:
        condition = conditions.get(kind.value)
        if condition is not None and condition.get("status") != "True":
            return str(condition.get("reason", ""))
    return ""


def _ready(plugin: Mapping[str, Any]) -> str:
    condition = _conditions(plugin).get(ConditionType.READY.value)
    return str(condition.get("status", "Unknown")) if condition else "-"


def _digest(plugin: Mapping[str, Any]) -> str:
    return str(((plugin.get("spec") or {}).get("implementation") or {}).get("digest") or "")


Column = tuple[str, Callable[[Mapping[str, Any], datetime.datetime], str]]


def _spec(key: str) -> Callable[[Mapping[str, Any], datetime.datetime], str]:
    return lambda plugin, _: str((plugin.get("spec") or {}).get(key) or "-")


def _status(key: str) -> Callable[[Mapping[str, Any], datetime.datetime], str]:
    return lambda plugin, _: str((plugin.get("status") or {}).get(key) or "-")


def _pods(plugin: Mapping[str, Any], _: datetime.datetime) -> str:
    workload = (plugin.get("status") or {}).get("workload")
    if not workload:
        return "-"
    return f"{workload.get('readyReplicas', 0)}/{workload.get('replicas', 0)}"


def _approvers(plugin: Mapping[str, Any], _: datetime.datetime) -> str:
    return ",".join((plugin.get("status") or {}).get("approvers") or []) or "-"


def _runtime(plugin: Mapping[str, Any], _: datetime.datetime) -> str:
    workload = (plugin.get("status") or {}).get("workload") or {}
    return str(workload.get("runtimeClass") or ("runc" if workload else "-"))


NAMESPACE: Column = ("NAMESPACE", lambda p, _: str((p.get("metadata") or {}).get("namespace")))
NAME: Column = ("NAME", lambda p, _: str((p.get("metadata") or {}).get("name")))
AGE: Column = (
    "AGE",
    lambda p, now: human_age((p.get("metadata") or {}).get("creationTimestamp"), now),
)
PHASE = "PHASE"
COLUMNS: tuple[Column, ...] = (
    NAME,
    ("ID", _spec("id")),
    ("VERSION", _spec("version")),
    (PHASE, _status("phase")),
    ("READY", lambda p, _: _ready(p)),
    ("REASON", lambda p, _: failing_reason(p) or "-"),
    ("DIGEST", lambda p, _: short_digest(_digest(p)) or "-"),
    AGE,
)
WIDE: tuple[Column, ...] = (
    NAME,
    ("ID", _spec("id")),
    ("VERSION", _spec("version")),
    ("SANDBOX", _spec("sandboxLevel")),
    (PHASE, _status("phase")),
    ("READY", lambda p, _: _ready(p)),
    ("REASON", lambda p, _: failing_reason(p) or "-"),
    ("APPROVERS", _approvers),
    ("PODS", _pods),
    ("RUNTIME", _runtime),
    ("DIGEST", lambda p, _: _digest(p) or "-"),
    AGE,
)


def plugin_table(
    plugins: Sequence[Mapping[str, Any]],
    *,
    now: datetime.datetime,
    all_namespaces: bool,
    wide: bool = False,
    colour: bool = False,
) -> str:
    """The `get` table, sorted by namespace and name, one line per plugin; "" when empty."""
    if not plugins:
        return ""
    columns: tuple[Column, ...] = (NAMESPACE,) if all_namespaces else ()
    columns += WIDE if wide else COLUMNS
    ordered = sorted(
        plugins,
        key=lambda p: (
            str((p.get("metadata") or {}).get("namespace")),
            str((p.get("metadata") or {}).get("name")),
        ),
    )
    rows = [[header for header, _ in columns]]
    rows += [[cell(plugin, now) for _, cell in columns] for plugin in ordered]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    phase_at = [header for header, _ in columns].index(PHASE)
    lines = []
    for number, row in enumerate(rows):
        cells = []
        for i, value in enumerate(row):
            padded = value.ljust(widths[i]) if i < len(row) - 1 else value
            if i == phase_at and number > 0 and value in _PHASES:
                padded = paint(padded, PHASE_COLOURS[PluginPhase(value)], colour)
            cells.append(padded)
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


_PHASES = frozenset(phase.value for phase in PluginPhase)


def as_list(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several objects as kubectl prints them with -o json|yaml: a v1 List."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {}}


def dump(document: Any, output: str) -> str:
    """JSON (indented, as kubectl) or YAML (block style, keys in their order)."""
    if output == "json":
        return json.dumps(document, indent=4, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def explanation_text(explanation: Explanation, *, colour: bool = False) -> str:
    """The summary, every step with its marker, the remedies of the steps that hold it back."""
    lines = [explanation.summary, ""]
    width = max(len(step.gate) for step in explanation.steps)
    mark_width = max(len(mark) for mark, _ in STEP_MARKS.values())
    for step in explanation.steps:
        mark, tint = STEP_MARKS[step.state]
        shown = paint(mark.ljust(mark_width), tint, colour)
        lines.append(f"  {shown}  {step.gate.ljust(width)}  {step.message}")
    blocking = explanation.blocking
    if blocking:
        lines += ["", "To unblock it:"]
        lines += [f"  {n}. {step.gate}: {step.remedy}" for n, step in enumerate(blocking, 1)]
    return "\n".join(lines) + "\n"
