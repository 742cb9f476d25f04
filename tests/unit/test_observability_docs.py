"""docs/metrics.md, docs/logging.md and the Grafana dashboard against the code: a metric added,
renamed or relabelled without its documentation row (or a dashboard query on a metric that does
not exist) fails here instead of misleading whoever is paged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from wayang_operator import metrics
from wayang_operator.core.reasons import REASONS
from wayang_operator.core.transitions import APPROVAL_RECORDED

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "wayang-operator" / "dashboards" / "wayang-operator.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every operator metric in the default registry, by its exposed name: (type, labels)."""
    labels = {
        wrapper._name: tuple(wrapper._labelnames)
        for wrapper in vars(metrics).values()
        if isinstance(wrapper, MetricWrapperBase)
    }
    out = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("wayang_"):
            continue
        exposed = family.name + ("_total" if family.type == "counter" else "")
        out[exposed] = (family.type, labels[family.name])
    return out


def series_names() -> set[str]:
    """The sample names a scrape can return (`_bucket`, `_count`, ... included)."""
    names = set()
    for exposed, (kind, _) in registered().items():
        base = exposed.removesuffix("_total")
        names |= {base + suffix for suffix in SUFFIXES[kind]}
    return names


def documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`wayang_"):
            labels = tuple(re.findall(r"`([a-z_]+)`", cells[2]))
            rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


def test_the_metrics_table_lists_exactly_the_registered_metrics() -> None:
    ours = registered()
    assert len(ours) >= 15, ours  # the parser found the registry, not an empty one
    assert documented() == ours


def test_metric_names_follow_prometheus_conventions() -> None:
    for name, (kind, labels) in registered().items():
        assert re.fullmatch(r"wayang_[a-z_]+", name), name
        assert name.endswith("_total") == (kind == "counter"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations in base units"
            assert not {"namespace", "plugin"} & set(labels), f"{name}: no per-plugin buckets"
        assert not {"digest", "approval", "message", "error", "uid"} & set(labels), name


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"expr", "definition"} and isinstance(value, str):
                    found.append(value)
                elif key == "query" and isinstance(value, str | dict):
                    found.append(value if isinstance(value, str) else str(value.get("query", "")))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return [e for e in found if e and e != "prometheus"]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # the panels of collapsed rows
    return out


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = series_names()
    queries = expressions(dashboard)
    assert len(queries) >= 20, queries
    for query in queries:
        used = set(re.findall(r"\bwayang_[a-z_]+\b", query))
        assert used, f"no wayang metric in {query!r}"
        assert used <= known, f"{query!r} uses {sorted(used - known)}"


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "namespace" in variables
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    titles = " ".join(panel["title"] for panel in panels(dashboard)).lower()
    for topic in ("phase", "approval", "quarantined", "reconcile", "scan", "audit", "admission"):
        assert topic in titles, topic
    assert "leader" in titles


def test_the_events_table_lists_every_announced_reason() -> None:
    text = (ROOT / "docs" / "logging.md").read_text().split("## Events", 1)[1]
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    expected = {a.event: a.event_type.value for a in REASONS.values() if a.event is not None}
    expected[APPROVAL_RECORDED] = "Normal"
    assert rows == expected
