"""kopf wiring of scans: the ScanReport index, scanning when a report is due, and re-evaluating
the plugins that use a digest when its report changes (see scans.py for the why)."""

from __future__ import annotations

import asyncio
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


@kopf.index(*SCANREPORTS)
def scan_index(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> object:
    record = ScanRecord.of(namespace, name, dict(body), RUNTIME.attestor) if namespace else None
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
    record = ScanRecord.of(namespace, name, dict(body), RUNTIME.attestor)
    if record is not None and RUNTIME.scanner.due(record, datetime.datetime.now(datetime.UTC)):
        RUNTIME.scanner.start(namespace, record, _rescan_interval(indexes, namespace))


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


async def _rescan_loop(indexes: Indexes) -> None:
    while True:
        await asyncio.sleep(RUNTIME.settings.scan_check_interval)
        if not RUNTIME.leadership.leading:
            continue
        now = datetime.datetime.now(datetime.UTC)
        for (namespace, _), records in list(indexes.scans.items()):
            for record in records:
                if RUNTIME.scanner.due(record, now):
                    RUNTIME.scanner.start(namespace, record, _rescan_interval(indexes, namespace))


@kopf.on.startup()
async def start_rescans(**kwargs: Any) -> None:
    """Interval rescans and rescans after a database update, which no watch event announces.

    One loop over the index rather than a kopf timer per ScanReport: kopf puts a finalizer on
    objects with timers, and a report must stay deletable while the operator is down.
    """
    RUNTIME.rescans = asyncio.create_task(_rescan_loop(indexes_from(kwargs)))


@kopf.on.cleanup()
async def stop_rescans(**_: Any) -> None:
    if RUNTIME.rescans is not None:
        RUNTIME.rescans.cancel()
        RUNTIME.rescans = None
