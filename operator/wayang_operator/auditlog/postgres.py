"""The PostgreSQL store: the same records and signed checkpoints, for logs that outgrow ConfigMaps.

The database enforces append-only twice: the operator's role is granted INSERT and SELECT only,
and triggers refuse UPDATE, DELETE and TRUNCATE for everyone, owner included, so a mistake or a
stolen operator credential cannot rewrite history (a superuser who drops the triggers can, and
`wayang audit verify` then reports what was changed). Appends take a transaction-scoped advisory
lock (needing no privilege beyond the role's), so concurrent writers queue instead of forking;
the unique audit id makes a repeated append a no-op.

`initialize` is what an administrator runs once (`wayang audit postgres-init`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .. import metrics
from ..api.audit import PluginAuditEvent
from .keys import Signer
from .log import LogState
from .verify import Snapshot

LOCK_KEY = 0x57415941  # "WAYA": the advisory lock that serialises appends
SEALED_EVERY = 500
"""Checkpoints kept for narrowing down a rewrite: one per this many entries."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS wayang_audit_entries (
    idx bigint PRIMARY KEY CHECK (idx >= 0),
    audit_id text NOT NULL UNIQUE,
    prev text NOT NULL,
    entry text NOT NULL
);
CREATE TABLE IF NOT EXISTS wayang_audit_checkpoints (
    size bigint PRIMARY KEY CHECK (size >= 0),
    note text NOT NULL,
    written timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION wayang_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;
DO $$ DECLARE t text; BEGIN
    FOREACH t IN ARRAY ARRAY['wayang_audit_entries', 'wayang_audit_checkpoints'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS append_only ON %I', t);
        EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION wayang_audit_append_only()', t);
        EXECUTE format('DROP TRIGGER IF EXISTS append_only_truncate ON %I', t);
        EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION wayang_audit_append_only()', t);
    END LOOP;
END $$;
"""
"""Tables and the append-only triggers; idempotent."""


async def initialize(admin_dsn: str, role: str) -> None:
    """Create the schema (as an administrator) and a role that may only INSERT and SELECT."""
    tables = sql.SQL("wayang_audit_entries, wayang_audit_checkpoints")
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as connection:
        await connection.execute(SCHEMA)
        cursor = await connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if await cursor.fetchone() is None:
            await connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for statement in ("REVOKE ALL ON {} FROM {}", "GRANT SELECT, INSERT ON {} TO {}"):
            await connection.execute(sql.SQL(statement).format(tables, sql.Identifier(role)))


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a whole log is parsed: a million entries
    are millions of new dicts, none of them garbage, and the collections their allocation
    triggers (each walking everything kept so far) took half of the read's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _record(idx: int, prev: str, entry: str) -> dict[str, Any]:
    return {"i": idx, "prev": prev, "entry": json.loads(entry)}


@dataclass
class PostgresStore:
    connection: psycopg.AsyncConnection[Any]
    signer: Signer
    state: LogState = field(default_factory=LogState)

    @classmethod
    async def connect(cls, dsn: str, signer: Signer) -> PostgresStore:
        connection = await psycopg.AsyncConnection.connect(dsn, autocommit=False)
        store = cls(connection, signer)
        async with connection.transaction():
            await store._catch_up()
        return store

    async def close(self) -> None:
        await self.connection.close()

    async def _catch_up(self) -> None:
        cursor = await self.connection.execute(
            "SELECT idx, prev, entry FROM wayang_audit_entries WHERE idx >= %s ORDER BY idx",
            (self.state.size,),
        )
        self.state.load(_record(*row) for row in await cursor.fetchall())

    async def append(self, events: Iterable[PluginAuditEvent]) -> int:
        batch = list(events)
        started = time.monotonic()
        async with self.connection.transaction():
            await self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            await self._catch_up()  # another writer may have appended
            records, frontier = self.state.prepare(batch)
            if not records:
                return 0
            async with self.connection.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO wayang_audit_entries (idx, audit_id, prev, entry) "
                    "VALUES (%s, %s, %s, %s)",
                    [
                        (
                            r["i"],
                            r["entry"]["auditId"],
                            r["prev"],
                            json.dumps(r["entry"], sort_keys=True, separators=(",", ":")),
                        )
                        for r in records
                    ],
                )
            size = self.state.size + len(records)
            await self.connection.execute(
                "INSERT INTO wayang_audit_checkpoints (size, note) VALUES (%s, %s)",
                (size, self.signer.sign(size, frontier.root())),
            )
        self.state.commit(records, frontier)
        metrics.AUDIT_APPENDED.inc(len(records))
        metrics.AUDIT_CHECKPOINT_SIZE.set(size)
        metrics.AUDIT_APPEND_SECONDS.observe(time.monotonic() - started)
        return len(records)

    async def snapshot(self) -> Snapshot:
        return await read_snapshot(self.connection)


async def snapshot(dsn: str) -> Snapshot:
    """The log as stored now (a connection of its own, read only)."""
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        return await read_snapshot(connection)


async def read_snapshot(connection: psycopg.AsyncConnection[Any]) -> Snapshot:
    async with connection.transaction():
        cursor = await connection.execute(
            "SELECT idx, prev, entry FROM wayang_audit_entries ORDER BY idx"
        )
        with collection_paused():
            records = [_record(*row) for row in await cursor.fetchall()]
        cursor = await connection.execute(
            "SELECT note FROM wayang_audit_checkpoints ORDER BY size DESC LIMIT 1"
        )
        latest = await cursor.fetchone()
        sealed_query = sql.SQL(
            "SELECT DISTINCT ON (size / {every}) note FROM wayang_audit_checkpoints "
            "ORDER BY size / {every}, size DESC"
        ).format(every=sql.Literal(SEALED_EVERY))
        cursor = await connection.execute(sealed_query)
        sealed = [row[0] for row in await cursor.fetchall()]
    return Snapshot(records=records, checkpoint=latest[0] if latest else None, sealed=sealed)
