"""Verification of an audit log, from any store: what is wrong, and from which entry on.

Findings are of six kinds: `modified` (an entry's content or chain link does not match its hash,
or the log does not hash to its signed checkpoint), `deleted` (indexes are missing), `reordered`
(entries stand out of their order), `truncated` (a signed checkpoint covers more entries than the
log holds; with `--trusted-checkpoint`, a log rolled back to an older state), `forked` (the log
does not extend a trusted checkpoint: a rewrite, or another log that verifies on its own), and
`bad-signature` (a checkpoint not signed by this log's key, or signed for another cluster).

Only the first break of the hash chain is reported: everything after it would break too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .log import GENESIS, chain_hash, hash_bytes
from .merkle import Frontier, leaf_hash, root
from .note import NoteError, open_note, parse_checkpoint_body


class Kind(enum.StrEnum):
    MODIFIED = "modified"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    FORKED = "forked"
    BAD_SIGNATURE = "bad-signature"


@dataclass(frozen=True)
class Finding:
    kind: Kind
    index: int | None
    """The first entry concerned, when the evidence names one."""
    message: str


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str


@dataclass(frozen=True)
class Snapshot:
    """A log as a store holds it: records in stored order and its signed checkpoints."""

    records: Sequence[Mapping[str, Any]]
    checkpoint: str | None
    """The latest signed checkpoint (the head's)."""
    sealed: Sequence[str] = ()
    """Checkpoints signed when segments were sealed (oldest first), to narrow down a rewrite."""


@dataclass
class Report:
    size: int
    findings: list[Finding] = field(default_factory=list)
    checkpoint: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_index(self) -> int | None:
        indexes = [f.index for f in self.findings if f.index is not None]
        return min(indexes) if indexes else None


@dataclass(frozen=True)
class Verifier:
    """Who may sign this log's checkpoints, and for which origin (this cluster)."""

    key_name: str
    public_key: Ed25519PublicKey
    origin: str

    def checkpoint(self, note: str) -> Checkpoint:
        """A verified checkpoint; NoteError or ValueError saying what is wrong."""
        body = open_note(note, self.key_name, self.public_key)
        origin, size, digest = parse_checkpoint_body(body)
        if origin != self.origin:
            raise NoteError(f"the checkpoint is for {origin!r}, not this log's {self.origin!r}")
        return Checkpoint(origin, size, digest, note)


def _order(records: Sequence[Mapping[str, Any]]) -> list[Finding]:
    indexes = [r.get("i") for r in records]
    if indexes == list(range(len(records))):
        return []
    numbers = [i for i in indexes if isinstance(i, int)]
    missing = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
    if missing:
        last = missing[-1]
        span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}..{last}"
        return [Finding(Kind.DELETED, missing[0], f"entries {span} are missing ({len(missing)})")]
    position = next(p for p, i in enumerate(indexes) if i != p)
    return [
        Finding(
            Kind.REORDERED,
            position,
            f"entry {indexes[position]} is stored where entry {position} belongs",
        )
    ]


def _chain(records: Sequence[Mapping[str, Any]]) -> tuple[list[bytes], Finding | None]:
    """The stored hashes (leaves' data) and the first break of the chain, if any."""
    hashes: list[bytes] = []
    links: list[bytes] = []
    previous, broken = GENESIS, None
    for position, record in enumerate(records):
        index = record.get("i", position)
        try:
            entry = record["entry"]
            stored = hash_bytes(str(entry.get("hash", "")))
            link = bytes.fromhex(str(record.get("prev", "")))
        except (KeyError, ValueError, AttributeError) as error:
            broken = broken or Finding(
                Kind.MODIFIED, index, f"entry {index} is unreadable: {error}"
            )
            hashes.append(bytes(32))
            continue
        hashes.append(stored)
        links.append(link)
        if broken is None and chain_hash(link, entry) != stored:
            broken = Finding(Kind.MODIFIED, index, f"entry {index} does not match its hash")
        elif broken is None and link != previous:
            broken = Finding(
                Kind.MODIFIED, index, f"entry {index} does not follow the entry stored before it"
            )
        previous = stored
    if broken is not None and broken.message.endswith("stored before it"):
        broken = _moved(records, hashes, links, broken)
    return hashes, broken


def _moved(
    records: Sequence[Mapping[str, Any]],
    hashes: list[bytes],
    links: list[bytes],
    broken: Finding,
) -> Finding:
    """An intact entry whose link names an entry stored later was moved: reordered."""
    position = next(p for p, r in enumerate(records) if r.get("i", p) == broken.index)
    stored_at = {digest: p for p, digest in enumerate(hashes)}
    follows = stored_at.get(links[position])
    if follows is not None and follows > position:
        return Finding(
            Kind.REORDERED,
            broken.index,
            f"entry {broken.index} holds the entry that follows entry {follows}: entries moved",
        )
    return broken


def _covers(hashes: list[bytes], checkpoint: Checkpoint) -> bool:
    return root([leaf_hash(h) for h in hashes[: checkpoint.size]]) == checkpoint.root


def verify(snapshot: Snapshot, verifier: Verifier, trusted: str | None = None) -> Report:
    records = snapshot.records
    report = Report(size=len(records))
    report.findings += _order(records)
    hashes, broken = _chain(records)
    if broken is not None and not report.findings:
        report.findings.append(broken)
    explained = bool(report.findings)

    if snapshot.checkpoint is None:
        if records:
            report.findings.append(Finding(Kind.TRUNCATED, None, "there is no signed checkpoint"))
        return report
    try:
        head = verifier.checkpoint(snapshot.checkpoint)
    except ValueError as error:
        report.findings.append(Finding(Kind.BAD_SIGNATURE, None, f"latest checkpoint: {error}"))
        return report
    report.checkpoint = head
    if head.size > len(records):
        report.findings.append(
            Finding(
                Kind.TRUNCATED,
                len(records),
                f"the signed checkpoint covers {head.size} entries, the log holds {len(records)}",
            )
        )
    elif not explained and not _covers(hashes, head):
        report.findings.append(_rewritten(hashes, snapshot.sealed, verifier, head.size))
    if not explained and head.size < len(records):
        report.findings.append(
            Finding(
                Kind.MODIFIED,
                head.size,
                f"entries {head.size}.. are not covered by the signed checkpoint",
            )
        )
    if trusted is not None:
        report.findings += _against_trusted(hashes, verifier, trusted, head)
    return report


def _rewritten(
    hashes: list[bytes], sealed: Sequence[str], verifier: Verifier, size: int
) -> Finding:
    """The log does not hash to its checkpoint: narrow it down with the sealed checkpoints,
    walking the leaves once (a root per checkpoint would be quadratic)."""
    checkpoints = []
    for note in sealed:
        try:
            checkpoints.append(verifier.checkpoint(note))
        except ValueError as error:
            return Finding(Kind.BAD_SIGNATURE, None, f"a sealed segment's checkpoint: {error}")
    frontier, start = Frontier(), 0
    pending = iter(sorted(checkpoints, key=lambda c: c.size))
    wanted = next(pending, None)
    for digest in hashes:
        if wanted is None or wanted.size > len(hashes):
            break
        frontier.append(leaf_hash(digest))
        if frontier.size == wanted.size:
            if frontier.root() != wanted.root:
                break
            start, wanted = wanted.size, next(pending, None)
    return Finding(
        Kind.MODIFIED,
        start,
        f"the log does not hash to its signed checkpoint of {size} entries "
        f"(rewritten at or after entry {start})",
    )


def _against_trusted(
    hashes: list[bytes], verifier: Verifier, trusted: str, head: Checkpoint
) -> list[Finding]:
    try:
        earlier = verifier.checkpoint(trusted)
    except ValueError as error:
        return [Finding(Kind.BAD_SIGNATURE, None, f"trusted checkpoint: {error}")]
    if earlier.size > len(hashes) or earlier.size > head.size:
        return [
            Finding(
                Kind.TRUNCATED,
                min(len(hashes), head.size),
                f"a checkpoint trusted earlier covers {earlier.size} entries; the log now "
                f"holds {len(hashes)} and signs {head.size}: truncated or rolled back",
            )
        ]
    if not _covers(hashes, earlier):
        return [
            Finding(
                Kind.FORKED,
                None,
                f"the log's first {earlier.size} entries do not hash to the trusted checkpoint: "
                "it is a different history (a fork or a rewrite)",
            )
        ]
    return []
