"""How each implementation type is fetched, scanned and run: one strategy per type, read by the
scan gate, the runnable check and the renderer, so none of them branches on the type.

A strategy says how trivy reads the artifact (an image, or the unpacked files of a fetched one),
whether the plugin runs in its own image or on a platform runtime host (whose image the operator
is configured with, pinned by digest), where the host finds the verified artifact, and which
limits the host enforces itself.

Adding a type is adding its strategy (and its host image, fetcher and scanner input); the
reconcile code is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from ..api.descriptor import ImplementationType, PluginImplementation
from ..api.resources import Peer
from ..fetching.http import OCI, FetchError, oci_reference

PULL_SECRET_ANNOTATION = "wayang.io/image-pull-secret"  # noqa: S105 - a name, not a secret
"""On a Plugin: a dockerconfigjson Secret of its namespace with the credentials its artifact is
pulled with, by the operator to scan it and in the pod to run it (every type); the policies'
`secrets.allowed` must admit it."""


class ScanInput(StrEnum):
    IMAGE = "image"
    """trivy pulls the image by digest (or reads its local archive)."""
    FILES = "rootfs"
    """The operator fetches the artifact, checks its digest and unpacks it; trivy reads the
    files as an installed root filesystem (so a wheel's `*.dist-info/METADATA` is found)."""


@dataclass(frozen=True)
class Strategy:
    scan: ScanInput
    hosted: bool
    """Runs on the platform's runtime host image for its type (the artifact is fetched into
    the pod), not in an image of its own."""
    load_path: str = ""
    """Where the pod's fetcher unpacks the verified artifact for the host (read-only there)."""
    default_repository: str | None = None
    """Where the artifact is when `implementation.repository` is omitted."""
    memory_env: str = ""
    """The host variable the renderer sets to the plugin's memory limit, for a host that keeps
    the plugin inside it itself (a wasm store's limit, a JVM's heap); empty: the cgroup only."""
    preopen_env: str = ""
    """The host variable the renderer sets to the writable folder of the `filesystem` grant
    (empty without it), for a host that grants files itself (WASI preopens)."""
    network_env: str = ""
    """The host variable the renderer sets to 1 when the plugin holds a capability that opens
    the network, for a host that is itself the plugin's only way out (wasm's `wayang.http`)."""
    strings: bool = False
    """The artifact is a binary whose embedded text trivy's secret scanner skips: its strings
    are extracted next to it before the scan."""
    java_db: bool = False
    """trivy reads the artifact (a jar) only with its Java database beside the vulnerability
    database: an offline scanner without one refuses to scan it rather than call it clean."""


STRATEGIES: Mapping[ImplementationType, Strategy] = {
    ImplementationType.CONTAINER: Strategy(ScanInput.IMAGE, hosted=False),
    ImplementationType.PYTHON: Strategy(
        ScanInput.FILES,
        hosted=True,
        load_path="/opt/wayang/plugin",
        default_repository="https://pypi.org/simple/",
    ),
    ImplementationType.WASM: Strategy(
        ScanInput.FILES,
        hosted=True,
        load_path="/opt/wayang/plugin",
        memory_env="WAYANG_WASM_MEMORY",
        preopen_env="WAYANG_WASM_PREOPEN",
        network_env="WAYANG_WASM_NETWORK",
        strings=True,
    ),
    ImplementationType.JAR: Strategy(
        ScanInput.FILES,
        hosted=True,
        load_path="/opt/wayang/plugin",
        memory_env="WAYANG_JVM_MEMORY",
        java_db=True,
    ),
    ImplementationType.MAVEN: Strategy(
        ScanInput.FILES,
        hosted=True,
        load_path="/opt/wayang/plugin",
        default_repository="https://repo.maven.apache.org/maven2/",
        memory_env="WAYANG_JVM_MEMORY",
        java_db=True,
    ),
}


def strategy(implementation: PluginImplementation) -> Strategy:
    return STRATEGIES[implementation.type]


def repository_of(implementation: PluginImplementation) -> str | None:
    """Where a fetched artifact comes from: `implementation.repository`, else the type's
    default (PyPI's simple index for python, Maven Central for maven)."""
    return implementation.repository or strategy(implementation).default_repository


@dataclass(frozen=True)
class Runtimes:
    """The platform's runtime hosts (the operator's settings, the chart's runtimes.images): the
    pinned image per hosted type, and where the artifact sources are, so the pods of hosted
    plugins may fetch from them whatever their own grants."""

    images: Mapping[str, str] = field(default_factory=dict)
    """Implementation type -> `repository@sha256:...` of its runtime host image."""
    artifacts_to: tuple[Peer, ...] = ()
    """Network peers of the artifact repositories (the NetworkPolicy's egress rule)."""
    artifact_ca: str = ""
    """PEM text of CA certificates the pods' fetchers trust besides the system's (a registry
    of a private CA): their `WAYANG_ARTIFACT_CA`."""

    def image(self, kind: ImplementationType) -> str | None:
        return self.images.get(kind.value)


NO_RUNTIMES = Runtimes()
"""No runtime host configured: only container plugins can run."""


def location_problem(implementation: Any) -> str | None:
    """Why a fetched artifact's `repository` cannot be fetched from (neither an OCI artifact
    reference nor an http(s) URL), or None. Takes the raw `implementation` mapping, valid or
    not, as admission and `wayang validate` see it. Every hosted type may come from
    `oci://<registry>/<name>[:<tag>]` (what `wayang push` makes); a python wheel also from a
    direct URL of the `.whl` file or a PEP 503 index (PyPI's when omitted), the other types
    from their file's URL (a wasm module without `repository` fails its fetch saying so)."""
    if not isinstance(implementation, dict):
        return None
    try:
        kind = ImplementationType(str(implementation.get("type")))
    except ValueError:
        return None
    if STRATEGIES[kind].scan is ScanInput.IMAGE:
        return None  # an image is its coordinate
    repository = implementation.get("repository")
    if not isinstance(repository, str):
        return None
    if repository.startswith(OCI):
        try:
            oci_reference(repository)
        except FetchError as error:
            return error.message
        return None
    if urlsplit(repository).scheme not in ("https", "http"):
        return (
            f"implementation.repository {repository!r} is neither an oci:// artifact "
            "reference nor an http(s) URL"
        )
    return None


def artifact_port(repository: str) -> int:
    """The TCP port a pod reaches the artifact repository on (a registry speaks HTTPS)."""
    parts = urlsplit(repository)
    return parts.port or (80 if parts.scheme == "http" else 443)
