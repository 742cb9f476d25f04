"""The text inside a wasm module, for trivy's secret scanner, which skips binary files.

A module's string constants live in its data segments (and toolchains put more text in custom
sections); they are read from the binary format (sections of id, LEB128 size, payload) and
their printable runs of 6 or more characters are written, one per line, to a text file next to
the module, which trivy then reads like any other file. Nothing is executed.
"""

from __future__ import annotations

import re
from pathlib import Path

MAGIC = b"\x00asm"
DATA, CUSTOM = 11, 0
PRINTABLE = re.compile(rb"[\x20-\x7e\t]{6,}")


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated LEB128 number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def sections(module: bytes) -> list[tuple[int, bytes]]:
    """(id, payload) of every section; ValueError if it is not a wasm binary."""
    if module[:4] != MAGIC:
        raise ValueError("not a wasm binary module")
    found, at = [], 8
    while at < len(module):
        kind = module[at]
        size, at = _leb128(module, at + 1)
        found.append((kind, module[at : at + size]))
        at += size
    return found


def _segments(payload: bytes) -> list[bytes]:
    """The bytes of each data segment (active with an `i32.const` offset, or passive); the
    whole payload when a segment is of another form (nothing is lost to the scan)."""
    count, at = _leb128(payload, 0)
    found = []
    for _ in range(count):
        flags, at = _leb128(payload, at)
        if flags == 2:
            _, at = _leb128(payload, at)  # memory index
        if flags in (0, 2):
            if payload[at] != 0x41:  # not i32.const N end
                return [payload]
            _, at = _leb128(payload, at + 1)
            if payload[at] != 0x0B:
                return [payload]
            at += 1
        elif flags != 1:
            return [payload]
        size, at = _leb128(payload, at)
        found.append(payload[at : at + size])
        at += size
    return found


def strings(module: bytes) -> list[str]:
    """The printable runs of the module's data segments and custom sections."""
    runs: list[str] = []
    for kind, payload in sections(module):
        if kind == DATA:
            parts = _segments(payload)
        elif kind == CUSTOM:
            parts = [payload]
        else:
            continue
        runs += [run.decode("ascii") for part in parts for run in PRINTABLE.findall(part)]
    return runs


def extract(folder: Path) -> None:
    """Write the strings of every wasm module in `folder` to `<module>.strings.txt`."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.read_bytes()[:4] != MAGIC:
            continue
        try:
            found = strings(path.read_bytes())
        except ValueError:
            continue  # not a well-formed module: the pod's host refuses it at load
        path.with_name(path.name + ".strings.txt").write_text("\n".join(found) + "\n")
