"""Where the project's builds cache their outputs, and one lock per cache entry.

Shared by the Go builds of the test infrastructure (e2e/localcluster/build.py) and the image
builds (runtime-images/build.py), so both honour the same `WAYANG_CACHE` and never build the same
entry twice at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    """``${WAYANG_CACHE:-${XDG_CACHE_HOME:-~/.cache}/wayang}`` (empty == unset)."""
    explicit = os.environ.get("WAYANG_CACHE")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "wayang").absolute()


@contextlib.contextmanager
def locked(path: Path, waiting: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Exclusive inter-process lock on `path`: parallel builds wait, then find the entry built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting(f"waiting for another build holding {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
