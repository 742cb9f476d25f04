"""One scan per artifact digest: ScanReports as the shared, persistent cache of trivy's results.

A plugin whose policy requires a scan asks for one by creating the ScanReport named after its
digest in its namespace (creation is idempotent, so fifty plugins on one digest make one object).
The leader scans a ScanReport when it has no result yet, when its rescan time has come, or when
trivy's database changed since the last scan; the result lives in the ScanReport's status, so a
restarted operator finds it there and does not scan again. At most `scan_concurrency` trivy runs
happen at once, a report is never scanned twice at the same time, and a digest already scanned
with the current database (in another namespace) reuses that run's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .. import metrics
from ..api.descriptor import ImplementationType, PluginDescriptor
from ..api.errors import ErrorPayload, ErrorType
from ..api.resources import ScanReportSpec, ScanReportStatus, report_name
from ..core.artifacts import STRATEGIES, ScanInput, repository_of, strategy
from ..core.attestation import Attestor
from ..core.references import pinned_reference
from ..core.scanpolicy import parse_time
from ..fetching import http
from ..kube import KubeApi
from ..manifests.validate import parse_model
from ..scanning import trivy, wasmstrings
from ..scanning.registry import credentials
from ..scanning.report import to_report
from ..settings import OperatorSettings

logger = logging.getLogger("wayang.scans")

PLURAL = "scanreports"
MAX_RETRY = 3600.0
CACHED_OUTPUTS = 64


@dataclass(frozen=True)
class ScanRecord:
    """What the index keeps of a ScanReport."""

    name: str
    spec: ScanReportSpec
    status: ScanReportStatus | None
    requested: bool = True
    """The operator signed its spec: it asked for this scan."""
    recorded: bool = True
    """The operator signed its status: the result is the operator's own."""

    @classmethod
    def of(
        cls, namespace: str, name: str, body: dict[str, Any], attestor: Attestor
    ) -> ScanRecord | None:
        raw_spec = dict(body.get("spec") or {})
        spec = parse_model(ScanReportSpec, raw_spec)[0]
        if spec is None:
            return None
        raw = body.get("status")
        status = parse_model(ScanReportStatus, dict(raw))[0] if raw else None
        return cls(
            name,
            spec,
            status,
            requested=attestor.requested(namespace, name, raw_spec),
            recorded=bool(raw) and attestor.recorded(namespace, name, dict(raw or {})),
        )

    @property
    def trusted_status(self) -> ScanReportStatus | None:
        """The status, if the operator wrote it for a scan it requested; else nothing."""
        return self.status if self.requested and self.recorded else None


def _about(namespace: str, report: str, **fields: Any) -> dict[str, Any]:
    """`extra=` for a log line about one ScanReport (shared by plugins: no plugin field)."""
    return {"namespace": namespace, "kind": "ScanReport", "object": report, **fields}


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Scanner:
    """Runs trivy for ScanReports (the leader only), bounded and deduplicated."""

    settings: OperatorSettings
    api: KubeApi
    attestor: Attestor
    inflight: set[tuple[str, str]] = field(default_factory=set)
    outputs: OrderedDict[tuple[str, str], tuple[dict[str, Any], str]] = field(
        default_factory=OrderedDict
    )
    _gate: asyncio.Semaphore | None = None
    _version: str | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def options(self) -> trivy.TrivyOptions:
        s = self.settings
        return trivy.TrivyOptions(
            binary=s.trivy,
            cache_dir=s.scan_cache_dir,
            db_repository=s.scan_db_repository,
            offline=s.scan_offline,
            timeout=s.scan_timeout,
            ca_file=s.artifact_ca_file,
        )

    @functools.cached_property
    def opener(self) -> http.Opener:
        """How the operator's fetch opens URLs: trusting `artifact_ca_file` too, when set."""
        ca = self.settings.artifact_ca_file
        return http.trusting(ca.read_text() if ca is not None else None)

    def due(self, record: ScanRecord, now: datetime.datetime) -> bool:
        if not record.requested:
            return False  # not the operator's request: never scanned (see core/attestation.py)
        status = record.trusted_status
        if status is None or status.next_scan_at is None:
            return True
        if now >= parse_time(status.next_scan_at):
            return True
        if status.report is None or status.last_error is not None:
            return False  # failing: the retry schedule in nextScanAt decides
        database = trivy.database(self.settings.scan_cache_dir)
        return database is not None and database.updated_at != status.database_updated_at

    def start(self, namespace: str, record: ScanRecord, rescan: datetime.timedelta) -> None:
        """Scan in the background unless this report is being scanned already; the next
        regular scan is `rescan` after this one (the shortest interval the policies ask)."""
        key = (namespace, record.name)
        if key in self.inflight:
            return
        self.inflight.add(key)
        task = asyncio.create_task(self._guarded(namespace, record, rescan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(
        self, namespace: str, record: ScanRecord, rescan: datetime.timedelta
    ) -> None:
        try:
            if self._gate is None:
                self._gate = asyncio.Semaphore(self.settings.scan_concurrency)
            async with self._gate:
                await self.scan(namespace, record, rescan)
        except Exception:  # a scan must never take the operator down
            metrics.ERRORS.labels("scan").inc()
            logger.exception(
                "scanning %s/%s failed",
                namespace,
                record.name,
                extra=_about(namespace, record.name),
            )
        finally:
            self.inflight.discard((namespace, record.name))

    async def _pull_config(self, namespace: str, spec: ScanReportSpec) -> bytes | None:
        if not spec.pull_secret:
            return None
        data = await self.api.secret_data(namespace, spec.pull_secret) or {}
        return data.get(".dockerconfigjson")

    def _has_java_db(self) -> bool:
        """Whether trivy can read jars: it downloads its Java database itself unless offline."""
        java_db = Path(self.settings.scan_cache_dir) / "java-db" / "metadata.json"
        return not self.settings.scan_offline or java_db.is_file()

    @contextlib.asynccontextmanager
    async def target(self, namespace: str, spec: ScanReportSpec) -> AsyncIterator[trivy.Target]:
        """What trivy reads: the image by digest (or its local archive), or, for a fetched
        type, the artifact's files, fetched, checked against the digest and unpacked into a
        folder that is removed after the scan."""
        artifact = spec.artifact
        digest = artifact.digest
        implementation = artifact.type or ImplementationType.CONTAINER
        if STRATEGIES[implementation].scan is ScanInput.FILES:
            if STRATEGIES[implementation].java_db and not self._has_java_db():
                raise trivy.ScanError(
                    ErrorType.VALIDATION_ERROR,
                    f"a {implementation.value} artifact is scanned with trivy's Java database, "
                    f"and the offline scanner has none in {self.settings.scan_cache_dir}/java-db "
                    "(copy one there, as for the vulnerability database)",
                    retryable=True,
                )
            config = await self._pull_config(namespace, spec)
            source = http.Source(
                implementation.value, artifact.repository or "", artifact.coordinate, digest
            )
            auth = http.basic_auth(config, source.repository) if config else None
            try:
                data = await asyncio.to_thread(http.fetch, source, auth, self.opener)
            except http.FetchError as error:
                kind = ErrorType(error.kind)
                raise trivy.ScanError(kind, error.message, retryable=error.retryable) from error
            with tempfile.TemporaryDirectory(prefix="wayang-artifact-") as folder:
                try:
                    await asyncio.to_thread(http.unpack, data, Path(folder), implementation.value)
                    if STRATEGIES[implementation].strings:
                        await asyncio.to_thread(wasmstrings.extract, Path(folder))
                except http.FetchError as error:
                    raise trivy.ScanError(
                        ErrorType(error.kind), error.message, retryable=False
                    ) from error
                yield trivy.Target(folder, digest, input=trivy.ROOTFS)
            return
        if self.settings.scan_archives is not None:
            for candidate in (report_name(digest), report_name(digest) + ".tar"):
                path = Path(self.settings.scan_archives) / candidate
                if path.exists():
                    yield trivy.Target(str(path), digest, local=True)
                    return
        reference = pinned_reference(artifact.coordinate, digest)
        config = await self._pull_config(namespace, spec)
        login = credentials(config, reference) if config else None
        user, password = login or (None, None)
        yield trivy.Target(reference, digest, username=user, password=password)

    async def _output(self, target: trivy.Target) -> tuple[dict[str, Any], str]:
        """trivy's output for the digest, reused while the database is the same."""
        database = trivy.database(self.settings.scan_cache_dir)
        key = (target.digest, database.updated_at if database else "")
        if key in self.outputs:
            self.outputs.move_to_end(key)
            return self.outputs[key]
        started = time.monotonic()
        try:
            output = await trivy.scan(self.options, target)
        except trivy.ScanError as error:
            metrics.SCANS.labels(error.kind.value).inc()
            raise
        finally:
            metrics.SCAN_SECONDS.observe(time.monotonic() - started)
        metrics.SCANS.labels("report").inc()
        if self._version is None:  # one `trivy --version` per process, not per scan
            self._version = await trivy.version(self.options)
        result = (output, self._version)
        self.outputs[key] = result
        while len(self.outputs) > CACHED_OUTPUTS:
            self.outputs.popitem(last=False)
        return result

    async def scan(self, namespace: str, record: ScanRecord, rescan: datetime.timedelta) -> None:
        spec, previous = record.spec, record.trusted_status or ScanReportStatus()
        runs = (previous.runs or 0) + 1
        now = _now()
        try:
            async with self.target(namespace, spec) as target:
                output, version = await self._output(target)
        except trivy.ScanError as error:
            failures = runs if previous.last_error else 1
            delay = self.settings.scan_retry * 2 ** (failures - 1) if error.retryable else None
            retry = min(MAX_RETRY, delay) if delay else rescan.total_seconds()
            payload = ErrorPayload(
                type=ErrorType(error.kind),
                message=error.message,
                retryable=error.retryable,
                origin_node="wayang-operator/scanner",
                timestamp=_stamp(now),
                details={"digest": spec.artifact.digest, "coordinate": spec.artifact.coordinate},
            )
            status: dict[str, Any] = {
                # the previous report stays until a scan succeeds
                "report": _wire(previous.report) if previous.report else None,
                "fixable": _wire(previous.fixable) if previous.fixable else None,
                "truncated": previous.truncated,
                "databaseUpdatedAt": previous.database_updated_at,
                "lastError": _wire(payload),
                "runs": runs,
                "nextScanAt": _stamp(now + datetime.timedelta(seconds=retry)),
            }
            logger.warning(
                "scan of %s in %s failed: %s",
                spec.artifact.digest,
                namespace,
                error,
                extra=_about(namespace, record.name, error=error.kind.value),
            )
        else:
            scanned = to_report(
                output,
                plugin_id=spec.plugin_id,
                version=spec.version,
                scanner_version=version,
                now=_stamp(now),
            )
            database = trivy.database(self.settings.scan_cache_dir)
            if database is not None:
                age = now - parse_time(database.updated_at)
                metrics.DATABASE_AGE.set(age.total_seconds())
            status = {
                "report": scanned.report.model_dump(mode="json", exclude_none=True, by_alias=True),
                "fixable": scanned.fixable.model_dump(
                    mode="json", exclude_none=True, by_alias=True
                ),
                "truncated": scanned.truncated,
                "databaseUpdatedAt": database.updated_at if database else None,
                "runs": runs,
                "nextScanAt": _stamp(now + rescan),
                "lastError": None,
            }
        status["attestation"] = self.attestor.sign_status(namespace, record.name, status)
        await self.api.patch_status(PLURAL, namespace, record.name, status)


async def request(
    api: KubeApi,
    attestor: Attestor,
    namespace: str,
    *,
    plugin: PluginDescriptor,
    pull_secret: str | None,
    existing: ScanRecord | None,
) -> None:
    """Create the ScanReport for a plugin's artifact, signed as the operator's request (the
    leader scans it). One the operator did not request (forged, or written by hand) is taken
    over: its spec is replaced by the operator's and its status cleared, so it is scanned."""
    name = report_name(plugin.implementation.digest)
    spec: dict[str, Any] = {
        "artifact": {
            "coordinate": plugin.implementation.coordinate,
            "digest": plugin.implementation.digest,
            **(
                {
                    "type": plugin.implementation.type.value,
                    "repository": repository_of(plugin.implementation),
                }
                if strategy(plugin.implementation).scan is ScanInput.FILES
                else {}
            ),
        },
        "pluginId": plugin.id,
        "version": plugin.version,
        **({"pullSecret": pull_secret} if pull_secret else {}),
    }
    spec["attestation"] = attestor.sign_spec(namespace, name, spec)
    if existing is None:
        body = {
            "apiVersion": "wayang.io/v1alpha1",
            "kind": "ScanReport",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        await api.create(PLURAL, namespace, body)
        return
    logger.warning(
        "ScanReport %s/%s was not written by the operator; replacing it",
        namespace,
        name,
        extra=_about(namespace, name),
    )
    await api.patch_spec(PLURAL, namespace, name, {**spec, "pullSecret": pull_secret})
    cleared: dict[str, Any] = dict.fromkeys(
        ("report", "fixable", "truncated", "databaseUpdatedAt", "nextScanAt", "runs",
         "lastError", "attestation", "conditions", "observedGeneration")
    )  # fmt: skip
    await api.patch_status(PLURAL, namespace, name, cleared)
