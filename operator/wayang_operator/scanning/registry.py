"""Where an image is pulled from, and with which credentials (a dockerconfigjson pull secret)."""

from __future__ import annotations

import json
from urllib.parse import urlparse

from ..fetching.http import entry_credentials

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def registry_host(reference: str) -> str:
    first = reference.split("/", 1)[0]
    if "/" in reference and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def _host_of(key: str) -> str:
    host = urlparse(key).netloc if "://" in key else key.split("/", 1)[0]
    return DOCKER_HUB if host in _HUB_ALIASES else host


def credentials(dockerconfig: bytes, reference: str) -> tuple[str, str] | None:
    """The username and password a dockerconfigjson holds for the reference's registry."""
    try:
        auths = json.loads(dockerconfig).get("auths") or {}
    except (ValueError, AttributeError):
        return None
    host = registry_host(reference)
    for key, entry in auths.items():
        if _host_of(str(key)) == host and isinstance(entry, dict):
            return entry_credentials(entry)
    return None
