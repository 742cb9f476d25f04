"""kopf wiring of scans: the ScanReport index, scanning when a report is due, and re-evaluating
the plugins that use a digest when its report changes (see scans.py for the why)."""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from ..core.scanpolicy import parse_duration
from .handlers import indexes_from, reconcile_many
from .reconcile import Indexes
from .runtime import RUNTIME
from .scans import ScanRecord

SCANREPORTS = ("wayang.io", "v1alpha1", "scanreports")
DEFAULT_RESCAN = "24h"
CHECK_SECONDS = 60
"""How often each ScanReport checks whether a rescan is due (a cheap comparison)."""


@kopf.index(*SCANREPORTS)
def scan_index(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
    record = ScanRecord.of(name, dict(body)) if namespace else None
    return {} if record is None else {(namespace, record.spec.artifact.digest): record}


def _rescan_interval(indexes: Indexes, namespace: str) -> datetime.timedelta:
    """The shortest rescan interval among the policies that require a scan here."""
    intervals = [
        parse_duration(p.scan.rescan_interval)
        for p in indexes.governing(namespace)
        if p.scan.required
    ]
    return min(intervals, default=parse_duration(DEFAULT_RESCAN))


def _scan_if_due(namespace: str, name: str, body: kopf.Body, indexes: Indexes) -> None:
    if not RUNTIME.leadership.leading:
        return
    record = ScanRecord.of(name, dict(body))
    scanner = RUNTIME.scanner
    if record is not None and scanner.due(record, datetime.datetime.now(datetime.UTC)):
        scanner.start(namespace, record, _rescan_interval(indexes, namespace))


@kopf.on.event(*SCANREPORTS)
async def scan_report_changed(
    *, namespace: str | None, name: str, type: str, body: kopf.Body, **kwargs: Any
) -> None:
    """Scan a new or due report, and re-evaluate every plugin of the namespace on its digest."""
    if namespace is None:
        return
    indexes = indexes_from(kwargs)
    if type != "DELETED":
        _scan_if_due(namespace, name, body, indexes)
    digest = (body.get("spec", {}).get("artifact") or {}).get("digest")
    users = [
        (namespace, plugin.name)
        for plugin in indexes.namespace_plugins(namespace)
        if plugin.descriptor is not None and plugin.descriptor.implementation.digest == digest
    ]
    await reconcile_many(indexes, users)


@kopf.timer(*SCANREPORTS, interval=CHECK_SECONDS, initial_delay=CHECK_SECONDS)
async def rescan_when_due(
    *, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    """Interval rescans and rescans after a database update, without any event to trigger them."""
    if namespace is not None:
        _scan_if_due(namespace, name, body, indexes_from(kwargs))
