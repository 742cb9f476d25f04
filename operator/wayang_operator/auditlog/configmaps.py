"""The default store: the audit log in ConfigMaps of the operator's namespace.

- `wayang-audit-head` holds the open tail (JSON lines), the size, the number of sealed segments
  and the latest signed checkpoint. It only moves by compare-and-swap on its resourceVersion, so
  two replicas appending at once never fork the log: the loser re-reads and appends after.
- `wayang-audit-000001`, … are sealed segments: `immutable: true` ConfigMaps of at most
  SEAL_ENTRIES entries or SEAL_BYTES (well under the 1 MiB object limit), each with the checkpoint
  signed when it was sealed.
- `wayang-audit-pubkey` publishes the verifier key and the origin; the private key is the Secret
  `wayang-audit-key`, generated on first start when missing.

Appends are idempotent by audit id. Sealing is two writes (create the segment, then move the
head); a crash between them leaves a segment that the head does not count yet: the next writer
adopts it when it continues the head's tail (it was about to be committed) and deletes it
otherwise (another writer won the race; nothing in it was ever part of the log). So a crash and
restart at any step neither loses nor duplicates an entry, as long as the caller appends the same
events again, which the operator does (its audit ids are derived from the decision).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..api.audit import PluginAuditEvent
from ..kube import KubeApi
from .keys import KEY_NAME, Signer, generate_pem, load_private, origin_for, public_pem
from .log import LogState, dumps, loads
from .merkle import Frontier
from .verify import Snapshot

HEAD = "wayang-audit-head"
PUBLIC = "wayang-audit-pubkey"
SECRET = "wayang-audit-key"  # noqa: S105 - the Secret's name
SEGMENT = "wayang-audit-{:06d}"
LABELS = {"app.kubernetes.io/part-of": "wayang-audit"}
SEAL_ENTRIES = 200
SEAL_BYTES = 512 * 1024
ATTEMPTS = 50


class StoreError(RuntimeError):
    """The log could not be written (after retries); the caller retries, nothing is lost."""


def segment_name(number: int) -> str:
    return SEGMENT.format(number)


async def signer_for(api: KubeApi, namespace: str) -> Signer:
    """The log's signer: the key from the Secret (created on first start), the cluster's origin;
    the verifier key is (re)published in the public ConfigMap."""
    data = await api.secret_data(namespace, SECRET)
    if data is None:
        await api.create_secret(namespace, SECRET, {"privateKey": generate_pem()})
        data = await api.secret_data(namespace, SECRET)  # whoever created it first wins
    if data is None or "privateKey" not in data:
        raise StoreError(f"Secret {namespace}/{SECRET} has no privateKey")
    signer = Signer(
        load_private(data["privateKey"]), origin_for(await api.namespace_uid("kube-system"))
    )
    published = {
        "vkey": signer.vkey,
        "origin": signer.origin,
        "keyName": KEY_NAME,
        "publicKey": public_pem(signer.private_key.public_key()),
    }
    current = await api.read_config_map(namespace, PUBLIC)
    if current is None:
        await api.write_config_map(namespace, PUBLIC, published, labels=LABELS)
    elif current[0] != published:
        await api.write_config_map(
            namespace, PUBLIC, published, labels=LABELS, resource_version=current[1]
        )
    return signer


@dataclass
class ConfigMapStore:
    api: KubeApi
    namespace: str
    signer: Signer
    fault: Callable[[str], None] = lambda step: None
    """Called after each write (`segment-created`, `head-moved`); tests raise there to crash."""
    seal_entries: int = SEAL_ENTRIES
    state: LogState = field(default_factory=LogState)
    segments: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _opened: bool = False
    _head_cache: tuple[dict[str, str], str] | None = None
    """The head as this writer last wrote it: appends compare-and-swap against it without reading
    first; a conflict (another writer, or a tampered head) clears it and reads."""

    async def _head(self) -> tuple[dict[str, str], str]:
        found = await self.api.read_config_map(self.namespace, HEAD)
        if found is None:
            empty = {
                "size": "0",
                "segments": "0",
                "tail": "",
                "tailStart": "0",
                "checkpoint": self.signer.sign(0, Frontier().root()),
            }
            await self.api.write_config_map(self.namespace, HEAD, empty, labels=LABELS)
            found = await self.api.read_config_map(self.namespace, HEAD)
        if found is None:
            raise StoreError(f"cannot create {self.namespace}/{HEAD}")
        return found

    async def _catch_up(self, head: dict[str, str], version: str) -> bool:
        """Bring the in-memory state to the head; True if the head was moved meanwhile (by
        adopting or removing a leftover segment) and must be read again."""
        sealed = int(head["segments"])
        for number in range(self.segments + 1, sealed + 1):
            found = await self.api.read_config_map(self.namespace, segment_name(number))
            if found is None:
                raise StoreError(f"sealed segment {segment_name(number)} is missing")
            self.state.load(r for r in loads(found[0]["records"]) if r["i"] >= self.state.size)
        self.segments = sealed
        tail = loads(head.get("tail", ""))
        self.state.load(r for r in tail if r["i"] >= self.state.size)
        return await self._settle_leftover(head, version, tail)

    async def _settle_leftover(
        self, head: dict[str, str], version: str, tail: list[dict[str, Any]]
    ) -> bool:
        name = segment_name(int(head["segments"]) + 1)
        found = await self.api.read_config_map(self.namespace, name)
        if found is None:
            return False
        records = loads(found[0]["records"])
        if (
            records[: len(tail)] == tail
            and records
            and records[0]["i"] == int(head["size"]) - len(tail)
        ):
            adopted = {
                "size": str(records[-1]["i"] + 1),
                "segments": str(int(head["segments"]) + 1),
                "tail": "",
                "tailStart": str(records[-1]["i"] + 1),
                "checkpoint": found[0]["checkpoint"],
            }
            await self.api.write_config_map(
                self.namespace, HEAD, adopted, labels=LABELS, resource_version=version
            )
        else:
            await self.api.delete_config_map(self.namespace, name)
        return True

    async def open(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> tuple[dict[str, str], str]:
        for _ in range(ATTEMPTS):
            head, version = await self._head()
            if int(head["size"]) < self.state.size:
                raise StoreError(
                    f"{HEAD} says {head['size']} entries, this process wrote {self.state.size}: "
                    "the head was rolled back (run `wayang audit verify`)"
                )
            if not await self._catch_up(head, version):
                self._opened = True
                return head, version
        raise StoreError("the audit head kept moving")

    def _tail_start(self, head: dict[str, str]) -> int:
        """Index of the tail's first entry (heads written before `tailStart` existed: parse)."""
        if "tailStart" in head:
            return int(head["tailStart"])
        tail = loads(head.get("tail", ""))
        return int(tail[0]["i"]) if tail else int(head["size"])

    async def append(self, events: Iterable[PluginAuditEvent]) -> int:
        """Append the events not in the log yet; returns how many were new."""
        batch = list(events)
        started = time.monotonic()
        async with self._lock:
            for _ in range(ATTEMPTS):
                head, version = self._head_cache or await self._sync()
                self._head_cache = None
                records, frontier = self.state.prepare(batch)
                if not records:
                    return 0
                size = self.state.size + len(records)
                checkpoint = self.signer.sign(size, frontier.root())
                # the tail's text grows by the new lines: no re-parsing of what is there
                text = head.get("tail", "") + dumps(records)
                count = int(head["size"]) - self._tail_start(head) + len(records)
                segments = self.segments
                if count >= self.seal_entries or len(text) >= SEAL_BYTES:
                    sealed = {
                        "records": text,
                        "checkpoint": checkpoint,
                        "first": str(self._tail_start(head)),
                    }
                    name = segment_name(segments + 1)
                    if (
                        await self.api.write_config_map(
                            self.namespace, name, sealed, labels=LABELS, immutable=True
                        )
                        is None
                    ):
                        continue  # a leftover of a crash or of a lost race: _sync settles it
                    self.fault("segment-created")
                    segments, text = segments + 1, ""
                moved = {
                    "size": str(size),
                    "segments": str(segments),
                    "tail": text,
                    "checkpoint": checkpoint,
                    "tailStart": str(size if not text else self._tail_start(head)),
                }
                written = await self.api.write_config_map(
                    self.namespace, HEAD, moved, labels=LABELS, resource_version=version
                )
                if written is None:
                    continue  # another replica appended first: read its entries, go after them
                self.fault("head-moved")
                self._head_cache = (moved, written)
                self.state.commit(records, frontier)
                self.segments = segments
                metrics.AUDIT_APPENDED.inc(len(records))
                metrics.AUDIT_CHECKPOINT_SIZE.set(size)
                metrics.AUDIT_APPEND_SECONDS.observe(time.monotonic() - started)
                return len(records)
        raise StoreError("could not append to the audit log: the head kept moving")

    async def snapshot(self) -> Snapshot:
        return await snapshot(self.api, self.namespace)


async def snapshot(api: KubeApi, namespace: str) -> Snapshot:
    """The log as stored now, for verification (read fresh, trusting nothing in memory)."""
    found = await api.read_config_map(namespace, HEAD)
    if found is None:
        return Snapshot(records=[], checkpoint=None)
    head = found[0]
    records: list[dict[str, Any]] = []
    sealed: list[str] = []
    for number in range(1, int(head.get("segments", "0")) + 1):
        segment = await api.read_config_map(namespace, segment_name(number))
        if segment is None:
            continue  # the gap shows as deleted entries
        records += loads(segment[0].get("records", ""))
        sealed.append(segment[0].get("checkpoint", ""))
    records += loads(head.get("tail", ""))
    return Snapshot(records=records, checkpoint=head.get("checkpoint"), sealed=sealed)


async def published_verifier(api: KubeApi, namespace: str) -> tuple[str, str] | None:
    """The verifier key text and origin the operator published; None if there are none."""
    found = await api.read_config_map(namespace, PUBLIC)
    if found is None or "vkey" not in found[0] or "origin" not in found[0]:
        return None
    return found[0]["vkey"], found[0]["origin"]
