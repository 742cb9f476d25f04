"""Kubernetes resource quantities as numbers, so that the approved surface can tell a smaller
resource profile from a larger one. Only the forms the API admits (api/base.py's CPU_QUANTITY
and MEMORY_QUANTITY patterns) are parsed: `2`, `500m`; `256Mi`, `1G`, `64Ki`."""

from __future__ import annotations

from fractions import Fraction

_DECIMAL = {"K": 10**3, "M": 10**6, "G": 10**9}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def cpu(text: str) -> Fraction:
    """Cores: `500m` is 1/2."""
    if text.endswith("m"):
        return Fraction(int(text[:-1]), 1000)
    return Fraction(int(text))


def memory(text: str) -> int:
    """Bytes: `1Gi` is 2**30."""
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    for suffix, factor in _DECIMAL.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)
