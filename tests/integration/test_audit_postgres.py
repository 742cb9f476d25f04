"""The PostgreSQL audit store on a real server (a throwaway one per test session): append-only
enforced by the database, every attack made by a superuser who disables the triggers, a crash
inside an append, and two writers at once. Each test has its own database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2e import localpg

from tests.documents import logged_event as event
from wayang_operator.auditlog.keys import Signer
from wayang_operator.auditlog.postgres import PostgresStore, initialize, snapshot
from wayang_operator.auditlog.verify import Kind, Report, verify

ROLE = "wayang_audit"
SIGNER = Signer(Ed25519PrivateKey.generate(), "wayang.io/audit/test-cluster")


def dsn(server: localpg.Server, database: str, user: str = "postgres") -> str:
    return f"host=127.0.0.1 port={server.port} dbname={database} user={user}"


@pytest.fixture
def database(postgres: localpg.Server) -> tuple[str, str]:
    """A fresh database with the schema: (admin DSN, the operator role's DSN)."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    asyncio.run(initialize(dsn(postgres, name), ROLE))
    return dsn(postgres, name), dsn(postgres, name, ROLE)


@pytest.fixture
async def log(database: tuple[str, str]) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.connect(database[1], SIGNER)
    try:
        for start in range(0, 30, 3):
            await store.append(event(n) for n in range(start, start + 3))
        yield store
    finally:
        await store.close()


async def check(database: tuple[str, str], trusted: str | None = None) -> Report:
    return verify(await snapshot(database[1]), SIGNER.verifier, trusted)


def tamper(database: tuple[str, str], *statements: str) -> None:
    """A superuser switches the append-only triggers off, changes rows, switches them back."""
    with psycopg.connect(database[0], autocommit=True) as admin:
        admin.execute("ALTER TABLE wayang_audit_entries DISABLE TRIGGER USER")
        admin.execute("ALTER TABLE wayang_audit_checkpoints DISABLE TRIGGER USER")
        for statement in statements:
            admin.execute(statement)
        admin.execute("ALTER TABLE wayang_audit_entries ENABLE TRIGGER USER")
        admin.execute("ALTER TABLE wayang_audit_checkpoints ENABLE TRIGGER USER")


async def test_the_log_verifies_and_appends_are_idempotent(
    log: PostgresStore, database: tuple[str, str]
) -> None:
    report = await check(database)
    assert report.ok, report.findings
    assert report.size == 30
    assert await log.append([event(3), event(29)]) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE wayang_audit_entries SET entry = entry WHERE idx = 1",
        "DELETE FROM wayang_audit_entries WHERE idx = 1",
        "TRUNCATE wayang_audit_entries",
        "DELETE FROM wayang_audit_checkpoints",
    ],
)
async def test_the_database_refuses_changes(
    log: PostgresStore, database: tuple[str, str], statement: str
) -> None:
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege)
    with psycopg.connect(database[1], autocommit=True) as operator, refused:
        operator.execute(statement)
    append_only = pytest.raises(psycopg.errors.RaiseException, match="append-only")
    with psycopg.connect(database[0], autocommit=True) as owner, append_only:  # even the owner
        owner.execute(statement)
    assert (await check(database)).ok


async def test_an_edited_field(log: PostgresStore, database: tuple[str, str]) -> None:
    tamper(
        database,
        "UPDATE wayang_audit_entries SET entry = replace(entry, 'approver-17', 'mallory') "
        "WHERE idx = 17",
    )
    report = await check(database)
    assert [(f.kind, f.index) for f in report.findings] == [(Kind.MODIFIED, 17)]


async def test_deleted_rows(log: PostgresStore, database: tuple[str, str]) -> None:
    tamper(database, "DELETE FROM wayang_audit_entries WHERE idx BETWEEN 9 AND 14")
    report = await check(database)
    assert (report.findings[0].kind, report.findings[0].index) == (Kind.DELETED, 9)


async def test_swapped_entries(log: PostgresStore, database: tuple[str, str]) -> None:
    tamper(
        database,
        "UPDATE wayang_audit_entries SET idx = 1000000 WHERE idx = 5",
        "UPDATE wayang_audit_entries SET idx = 5 WHERE idx = 6",
        "UPDATE wayang_audit_entries SET idx = 6 WHERE idx = 1000000",
    )
    report = await check(database)
    assert report.findings[0].kind is Kind.REORDERED
    assert report.findings[0].index == 5


async def test_a_dropped_tail(log: PostgresStore, database: tuple[str, str]) -> None:
    tamper(database, "DELETE FROM wayang_audit_entries WHERE idx >= 27")
    report = await check(database)
    assert [(f.kind, f.index) for f in report.findings] == [(Kind.TRUNCATED, 27)]


async def test_a_rollback_to_an_older_checkpoint(
    log: PostgresStore, database: tuple[str, str]
) -> None:
    trusted = (await snapshot(database[1])).checkpoint
    tamper(
        database,
        "DELETE FROM wayang_audit_entries WHERE idx >= 21",
        "DELETE FROM wayang_audit_checkpoints WHERE size > 21",
    )
    assert (await check(database)).ok, "an older state is a valid log on its own"
    report = await check(database, trusted)
    assert [(f.kind, f.index) for f in report.findings] == [(Kind.TRUNCATED, 21)]


async def test_a_checkpoint_signed_with_another_key(
    log: PostgresStore, database: tuple[str, str]
) -> None:
    forger = Signer(Ed25519PrivateKey.generate(), SIGNER.origin)
    forged = forger.sign(30, log.state.frontier.root()).replace("'", "''")
    tamper(database, f"UPDATE wayang_audit_checkpoints SET note = '{forged}' WHERE size = 30")
    report = await check(database)
    assert [f.kind for f in report.findings] == [Kind.BAD_SIGNATURE]


async def test_a_fork(
    log: PostgresStore, database: tuple[str, str], postgres: localpg.Server
) -> None:
    trusted = (await snapshot(database[1])).checkpoint
    name = f"fork_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    await initialize(dsn(postgres, name), ROLE)
    fork = await PostgresStore.connect(dsn(postgres, name, ROLE), SIGNER)
    try:
        await fork.append(event(n, writer="fork") for n in range(30))
    finally:
        await fork.close()
    other = await snapshot(dsn(postgres, name, ROLE))
    assert verify(other, SIGNER.verifier).ok
    assert [f.kind for f in verify(other, SIGNER.verifier, trusted).findings] == [Kind.FORKED]


async def test_a_crash_inside_an_append_writes_nothing(database: tuple[str, str]) -> None:
    store = await PostgresStore.connect(database[1], SIGNER)
    original = store.signer

    class Exploding(Signer):
        def sign(self, size: int, root: bytes) -> str:
            raise RuntimeError("crash after the entries, before the checkpoint")

    store.signer = Exploding(original.private_key, original.origin)
    with pytest.raises(RuntimeError, match="crash"):
        await store.append(event(n) for n in range(5))
    await store.close()
    restarted = await PostgresStore.connect(database[1], SIGNER)
    await restarted.append(event(n) for n in range(7))
    await restarted.close()
    report = await check(database)
    assert report.ok
    assert report.size == 7


async def test_two_writers_at_once(database: tuple[str, str]) -> None:
    first = await PostgresStore.connect(database[1], SIGNER)
    second = await PostgresStore.connect(database[1], SIGNER)

    async def write(store: PostgresStore, writer: str) -> None:
        for n in range(0, 40, 4):
            await store.append(event(m, writer) for m in range(n, n + 4))

    try:
        await asyncio.gather(write(first, "one"), write(second, "two"))
    finally:
        await first.close()
        await second.close()
    report = await check(database)
    assert report.ok, report.findings
    assert report.size == 80


def wayang_audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "wayang"), "audit", *args],
        capture_output=True,
        text=True,
        check=False,
    )


async def test_the_cli_reads_postgres(
    log: PostgresStore, database: tuple[str, str], tmp_path: Path
) -> None:
    vkey = tmp_path / "audit.vkey"
    vkey.write_text(SIGNER.vkey)
    pinned = ("--postgres", database[1], "--vkey", str(vkey), "--origin", SIGNER.origin)
    ok = wayang_audit("verify", *pinned)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "30 entries" in ok.stdout
    shown = wayang_audit("show", "--postgres", database[1], "--since", "2026-11-22T00:00:00Z")
    assert len(shown.stdout.splitlines()) == 30
    checkpoint = wayang_audit("checkpoint", "--postgres", database[1]).stdout
    assert checkpoint.startswith(SIGNER.origin + "\n30\n")
    tamper(database, "DELETE FROM wayang_audit_entries WHERE idx = 4")
    bad = wayang_audit("verify", *pinned)
    assert bad.returncode == 1
    assert "FAIL deleted at entry 4" in bad.stdout
