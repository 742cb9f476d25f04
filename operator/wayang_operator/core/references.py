"""Image references pinned by digest: what is scanned and what runs are the same bytes."""

from __future__ import annotations


def pinned_reference(coordinate: str, digest: str) -> str:
    """`repo@digest`: a tag in the coordinate is informational and dropped, the digest pins."""
    repository = coordinate
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    return f"{repository}@{digest}"
