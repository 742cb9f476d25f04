"""Entries of the audit log: canonical JSON, the hash chain, and the log's in-memory state.

Each stored record is `{"i": index, "prev": <hash of the entry before>, "entry": <the seed's
PluginAuditEvent>}`. The entry's `hash` is `blake3:<hex>` of the previous hash's bytes followed by
the entry's canonical JSON (every field but `hash` and `signature`, keys sorted, no whitespace, no
nulls), so editing, removing or moving any entry breaks every hash after it. Each entry's hash is
then a leaf of a Merkle tree (merkle.py) whose root the signed checkpoints commit to; entries are
not signed one by one (`signature` stays empty): a signed root proves them all, and verifying
100,000 signatures would cost seconds that the checkpoint makes unnecessary.

Verification works on plain dicts, not models, so checking 100,000 entries stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import blake3

from ..api.audit import PluginAuditEvent
from .merkle import Frontier, leaf_hash

GENESIS = bytes(32)
"""The `prev` of entry 0."""
PREFIX = "blake3:"


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: everything but `hash` and `signature`."""
    content = {k: v for k, v in entry.items() if k not in {"hash", "signature"} and v is not None}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(previous: bytes, entry: Mapping[str, Any]) -> bytes:
    return blake3.blake3(previous + canonical(entry)).digest()


def hash_text(digest: bytes) -> str:
    return PREFIX + digest.hex()


def hash_bytes(text: str) -> bytes:
    """`blake3:<hex>` → bytes; ValueError for anything else."""
    if not text.startswith(PREFIX) or len(text) != len(PREFIX) + 64:
        raise ValueError(f"not a blake3 hash: {text[:80]!r}")
    return bytes.fromhex(text[len(PREFIX) :])


def wire(event: PluginAuditEvent) -> dict[str, Any]:
    """An event as it is stored: its JSON form, without nulls."""
    return event.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass
class LogState:
    """What a writer keeps in memory: the last hash, the Merkle frontier, the audit ids seen."""

    size: int = 0
    last: bytes = GENESIS
    frontier: Frontier = field(default_factory=Frontier)
    ids: set[str] = field(default_factory=set)

    def load(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Take in stored records (trusted: the writer's own log; `verify` is for doubt)."""
        for record in records:
            entry = record["entry"]
            digest = hash_bytes(str(entry["hash"]))
            self.frontier.append(leaf_hash(digest))
            self.ids.add(str(entry["auditId"]))
            self.last = digest
            self.size += 1

    def prepare(self, events: Iterable[PluginAuditEvent]) -> tuple[list[dict[str, Any]], Frontier]:
        """Records for the events not in the log yet (appends are idempotent by audit id), and the
        frontier after them; nothing changes until `commit`."""
        records: list[dict[str, Any]] = []
        frontier = self.frontier.copy()
        last, seen = self.last, set()
        for event in events:
            if event.audit_id in self.ids or event.audit_id in seen:
                continue
            entry = wire(event)
            entry.pop("signature", None)
            digest = chain_hash(last, entry)
            entry["hash"] = hash_text(digest)
            records.append({"i": self.size + len(records), "prev": last.hex(), "entry": entry})
            frontier.append(leaf_hash(digest))
            last = digest
            seen.add(event.audit_id)
        return records, frontier

    def commit(self, records: list[dict[str, Any]], frontier: Frontier) -> None:
        for record in records:
            self.ids.add(str(record["entry"]["auditId"]))
        if records:
            self.last = hash_bytes(str(records[-1]["entry"]["hash"]))
        self.size += len(records)
        self.frontier = frontier


def dumps(records: Iterable[Mapping[str, Any]]) -> str:
    """JSON lines, one record each (how segments and exports store them)."""
    return "".join(
        json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        for r in records
    )


def loads(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
