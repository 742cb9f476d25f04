"""Turn command-line paths (files, folders, `-`) into parsed documents, in a stable order."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .loader import DEFAULT_LIMITS, Document, Limits, LoadError, load_bytes

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


def _files_under(folder: Path) -> Iterator[Path]:
    """Manifest files below `folder`, sorted, skipping hidden entries (.git) and symlinked dirs."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES):
                yield Path(root) / name


def _read(path: Path, limits: Limits) -> bytes | LoadError:
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            return LoadError(
                str(path), None, f"file is larger than {limits.max_file_bytes:,} bytes"
            )
        return path.read_bytes()
    except OSError as error:
        return LoadError(str(path), None, f"cannot read: {error.strerror or error}")


def load_paths(paths: list[str], limits: Limits = DEFAULT_LIMITS) -> Iterator[Document | LoadError]:
    """Every document of every manifest the paths name; unreadable paths become LoadErrors."""
    for argument in paths:
        if argument == STDIN:
            raw = sys.stdin.buffer.read(limits.max_file_bytes + 1)
            json_only = raw.lstrip()[:1] in (b"{", b"[")
            yield from load_bytes(raw, "<stdin>", json_only=json_only, limits=limits)
            continue
        path = Path(argument)
        if path.is_dir():
            yield from _load_files(_files_under(path), limits)
        elif path.exists():
            yield from _load_files([path], limits)
        else:
            yield LoadError(argument, None, "no such file or directory")


def _load_files(
    files: Iterator[Path] | list[Path], limits: Limits
) -> Iterator[Document | LoadError]:
    for file in files:
        raw = _read(file, limits)
        if isinstance(raw, LoadError):
            yield raw
        else:
            yield from load_bytes(raw, str(file), json_only=file.suffix == ".json", limits=limits)
