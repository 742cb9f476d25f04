"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import localpg


@pytest.fixture(scope="session")
def postgres() -> Iterator[localpg.Server]:
    """One throwaway PostgreSQL server per session (see e2e/localpg.py).

    As root the server runs as an unprivileged user, which must traverse its folder's parents. Not
    under pytest's temp root: pytest makes /tmp/pytest-of-<user> 0700 again whenever another
    session starts, and the server (and pg_ctl stop) would then lose its own data folder.
    """
    folder = Path(tempfile.mkdtemp(prefix="wayang-postgres-"))
    if os.geteuid() == 0:
        folder.chmod(0o755)
    try:
        with localpg.running(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)
