"""The throwaway PostgreSQL server works, and grants hold: what the audit store relies on."""

from __future__ import annotations

import psycopg
import pytest
from e2e import localpg
from psycopg import conninfo, errors


def test_create_insert_select(postgres: localpg.Server) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        conn.execute("CREATE TABLE smoke (id int PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO smoke VALUES (%s, %s)", (1, "hello"))
        assert conn.execute("SELECT id, note FROM smoke").fetchall() == [(1, "hello")]


def test_insert_select_grant_forbids_update(postgres: localpg.Server) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE audit (id serial PRIMARY KEY, event text NOT NULL)")
        admin.execute("CREATE ROLE appender LOGIN")
        admin.execute("GRANT INSERT, SELECT ON audit TO appender")
        admin.execute("GRANT USAGE ON SEQUENCE audit_id_seq TO appender")
    with psycopg.connect(conninfo.make_conninfo(postgres.dsn, user="appender")) as conn:
        conn.execute("INSERT INTO audit (event) VALUES ('approved')")
        assert conn.execute("SELECT event FROM audit").fetchall() == [("approved",)]
        conn.commit()
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE audit SET event = 'rewritten'")
