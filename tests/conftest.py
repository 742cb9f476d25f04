"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from e2e import localpg


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localpg.Server]:
    """One throwaway PostgreSQL server per session (see e2e/localpg.py).

    As root the server runs as an unprivileged user, which must traverse pytest's temp dirs; pytest
    makes them 0700, so the folder and its pytest-owned parents are opened to 0755.
    """
    folder = tmp_path_factory.mktemp("postgres")
    if os.geteuid() == 0:
        base = tmp_path_factory.getbasetemp()
        for path in (folder, base, base.parent):
            if path.stat().st_uid == 0 and path.name.startswith(("postgres", "pytest-")):
                path.chmod(0o755)
    with localpg.running(folder) as server:
        yield server
