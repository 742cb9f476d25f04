"""Artifact references: what is pulled is what is checked, and pinned by digest, so what is
scanned and what runs are the same bytes.

For a container, the pulled reference is `coordinate@digest`: `implementation.repository`, if
given, must name the same place (the coordinate is under it), or a policy's registry rule could
be satisfied by one field while the bytes come from the other. The CRD refuses a disagreement
with a CEL rule (api/descriptor.py's REPOSITORY_AGREES), `wayang validate` and the Validated
gate with `disagreement`.
"""

from __future__ import annotations

from typing import Any

SCHEMES = ("oci://", "https://", "http://")


def schemeless(location: str) -> str:
    for scheme in SCHEMES:
        if location.startswith(scheme):
            return location[len(scheme) :]
    return location.split("://", 1)[-1]


def under(coordinate: str, repository: str) -> bool:
    """The coordinate (an image repository, maybe with a tag) is at or under `repository`."""
    base = schemeless(repository).rstrip("/")
    return coordinate == base or coordinate.startswith((base + "/", base + ":", base + "@"))


def disagreement(implementation: Any) -> str | None:
    """Why a container's repository and coordinate name different places, or None. Takes the
    raw `implementation` mapping, valid or not, as the admission webhook and validate see it."""
    if not isinstance(implementation, dict) or implementation.get("type") != "container":
        return None
    repository, coordinate = implementation.get("repository"), implementation.get("coordinate")
    if not isinstance(repository, str) or not isinstance(coordinate, str):
        return None
    if under(coordinate, repository):
        return None
    return (
        f"the image is pulled from the coordinate {coordinate!r}, which is not under "
        f"implementation.repository {repository!r}: the two must name the same place (drop "
        "repository, or make the coordinate start with it)"
    )


def pinned_reference(coordinate: str, digest: str) -> str:
    """`repo@digest`: a tag in the coordinate is informational and dropped, the digest pins."""
    repository = coordinate
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    return f"{repository}@{digest}"
