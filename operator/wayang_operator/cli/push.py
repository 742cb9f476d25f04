"""`wayang push FILE REF`: publish a plugin's artifact to an OCI registry, ready to pin.

A hosted plugin's artifact (a wheel, a wasm module, a jar) goes up as an OCI artifact in the ORAS
style: the file as the one layer blob (titled with its name), the empty config, and an image
manifest whose `artifactType` says the plugin type, tagged with REF's tag. What a Plugin pins is
the digest of the file itself (`implementation.digest`), so the pod's fetcher pulls the blob by
that digest: a tag moved to other bytes later changes nothing for a pinned plugin. The command
prints the `implementation:` lines to paste, and the manifest's digest (what `oras pull` takes).
With `--pin MANIFEST` it prints that Plugin manifest instead, its `spec.implementation` pinned to
what was pushed (and its type taken from it when `--type` is not given: a `.jar` may be `jar` or
`maven`); a signature in it is dropped, since it covered the old digest: sign again.

`wayang push --image LAYOUT REF` pushes an OCI image layout folder (what runtime-images/build.py
writes) as a container image: every blob, then the manifest, tagged; it prints
`<repository>@<manifest digest>`, the pinned reference a container plugin's coordinate and digest
are. The registry protocol, its Basic/Bearer authentication and the CA handling are the fetcher's
(fetching/http.py), so what pushes is what the pods pull with.

Exit codes: 0 pushed, 1 the registry refused or could not be reached, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import yaml

from ..core.artifacts import STRATEGIES
from ..fetching import http
from ..images.oci import MANIFEST, ImageError, manifest_digest

USAGE = 2
REFUSED = 1
EMPTY = b"{}"
EMPTY_CONFIG = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:" + hashlib.sha256(EMPTY).hexdigest(),
    "size": len(EMPTY),
}
"""The OCI 1.1 empty descriptor: the config of an artifact that has none."""
TITLE = "org.opencontainers.image.title"
EXTENSIONS = {".wasm": "wasm", ".whl": "python", ".jar": "jar"}
"""The plugin type a file's extension says (`--type` otherwise, or to override)."""
LAYER_TYPES = {"wasm": "application/vnd.wasm.content.layer.v1+wasm"}
"""The layer media type per plugin type: the wasm community's for modules, generic otherwise."""
GENERIC_LAYER = "application/octet-stream"
TYPES = tuple(kind.value for kind, how in STRATEGIES.items() if how.hosted)
"""The types pushed as OCI artifacts (a container is pushed as an image, --image)."""


def artifact_type(kind: str) -> str:
    """The manifest's `artifactType` for a plugin type."""
    return f"application/vnd.wayang.plugin.{kind}.v1"


def register(commands: Any) -> None:
    push = commands.add_parser(
        "push",
        help="push a plugin artifact (or an image layout) to an OCI registry",
        description="Push FILE to REF (`[oci://]host[:port]/name[:tag]`, tag `latest` when "
        "omitted) as an OCI artifact and print the implementation lines that pin it; with "
        "--image, push an OCI image layout folder as a container image.",
    )
    push.add_argument(
        "source", metavar="FILE", type=Path, help="the artifact file (a layout with --image)"
    )
    push.add_argument("reference", metavar="REF", help="[oci://]host[:port]/name[:tag]")
    push.add_argument("--type", choices=TYPES, help="the plugin type (default: from extension)")
    push.add_argument(
        "--image", action="store_true", help="FILE is an OCI image layout folder (an image)"
    )
    push.add_argument(
        "--ca-file", type=Path, help="PEM CA certificates to trust besides the system's"
    )
    push.add_argument(
        "--registry-config",
        type=Path,
        metavar="DOCKERCONFIGJSON",
        help="credentials: a dockerconfigjson (like a pull Secret's) with an entry for the host",
    )
    push.add_argument(
        "--pin",
        type=Path,
        metavar="MANIFEST",
        help="print this Plugin manifest with spec.implementation pinned to what was pushed "
        "(the summary goes to stderr)",
    )
    push.set_defaults(handler=run_push)


def _fail(message: str, code: int = USAGE) -> int:
    print(f"wayang push: {message}", file=sys.stderr)
    return code


def plugin_type(path: Path, given: str | None) -> str:
    """The plugin type of the file: `--type`, else its extension; ValueError naming the flag."""
    if given is not None:
        return given
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(f"{ext} ({kind})" for ext, kind in EXTENSIONS.items())
        raise ValueError(
            f"{path.name}: the extension does not say the plugin type ({known}); give --type"
        )
    return kind


def artifact_manifest(kind: str, name: str, data: bytes) -> dict[str, Any]:
    """The ORAS-style image manifest of one file: the empty config, the file as its one layer
    titled `name`. No timestamps, so the same file always makes the same manifest."""
    layer = {
        "mediaType": LAYER_TYPES.get(kind, GENERIC_LAYER),
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "annotations": {TITLE: name},
    }
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type(kind),
        "config": EMPTY_CONFIG,
        "layers": [layer],
    }


def implementation_lines(kind: str, reference: http.OciReference, digest: str) -> str:
    """The `implementation:` lines that pin what was pushed, for the Plugin manifest."""
    if kind == "container":
        where = f"  coordinate: {reference.registry}/{reference.name}"
    else:
        where = f"  repository: {reference}"
    return f"implementation:\n  type: {kind}\n{where}\n  digest: {digest}\n"


def read_manifest(path: Path, image: bool) -> dict[str, Any]:
    """The Plugin manifest `--pin` rewrites; ValueError naming what is wrong with it."""
    try:
        document: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"--pin {path}: not YAML ({error})") from error
    implementation = (
        (document.get("spec") or {}).get("implementation") if isinstance(document, dict) else None
    )
    if not isinstance(implementation, dict) or document.get("kind") != "Plugin":
        raise ValueError(f"--pin {path}: not a Plugin manifest with spec.implementation")
    kind = implementation.get("type")
    if image != (kind == "container"):
        pushed = "an image (--image)" if image else "an artifact"
        raise ValueError(
            f"--pin {path}: spec.implementation.type is {kind!r}, but {pushed} was given"
        )
    result: dict[str, Any] = document
    return result


def pinned(
    document: dict[str, Any], kind: str, reference: http.OciReference, digest: str
) -> tuple[dict[str, Any], bool]:
    """The manifest with its artifact pinned to what was pushed, and whether a signature (over
    the old artifact) was dropped."""
    spec = dict(document["spec"])
    implementation = dict(spec["implementation"], type=kind, digest=digest)
    if kind == "container":
        implementation["coordinate"] = f"{reference.registry}/{reference.name}"
    else:
        implementation["repository"] = str(reference)
    spec["implementation"] = implementation
    signed = spec.pop("signature", None) is not None
    return {**document, "spec": spec}, signed


@dataclass
class Pusher:
    """Uploads to one repository: blobs (skipped when the registry has them), then manifests."""

    registry: http.Registry
    uploaded: int = 0
    """Bytes sent (blobs the registry already had are not)."""

    def _has(self, digest: str) -> bool:
        url = self.registry.reference.url("blobs", digest)
        try:
            self.registry.call("HEAD", url)
        except http.FetchError as error:
            if isinstance(error.__cause__, urllib.error.HTTPError) and error.__cause__.code == 404:
                return False
            raise
        return True

    def blob(self, data: bytes) -> str:
        """Upload `data` as one blob (a monolithic upload: POST, then PUT with its digest)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self._has(digest):
            return digest
        start = self.registry.reference.url("blobs", "uploads/")
        _, headers = self.registry.call("POST", start, data=b"")
        location = urljoin(start, headers.get("location", ""))
        separator = "&" if "?" in location else "?"  # Distribution's carries ?_state=
        self.registry.call(
            "PUT",
            f"{location}{separator}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self.uploaded += len(data)
        return digest

    def manifest(self, body: bytes, media_type: str) -> str:
        """PUT the manifest under the reference's tag; its digest, as the registry says it."""
        url = self.registry.reference.url("manifests", self.registry.reference.tag)
        _, headers = self.registry.call("PUT", url, data=body, headers={"Content-Type": media_type})
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        said = headers.get("docker-content-digest", computed)
        if said != computed:
            raise http.FetchError(
                "SecurityError",
                f"the registry stored the manifest as {said}, not {computed}",
                retryable=False,
            )
        return computed


def _layout_blobs(layout: Path) -> tuple[bytes, str, list[bytes]]:
    """The image's manifest (bytes, media type) and the blobs it names, from a layout folder."""
    digest = manifest_digest(layout)

    def blob(descriptor_digest: str) -> bytes:
        algorithm, _, hexdigest = descriptor_digest.partition(":")
        path = layout / "blobs" / algorithm / hexdigest
        try:
            return path.read_bytes()
        except OSError as error:
            raise ImageError(f"{layout}: blob {descriptor_digest} is missing ({error})") from error

    body = blob(digest)
    manifest = json.loads(body)
    named = [manifest["config"], *manifest.get("layers", [])]
    return body, str(manifest.get("mediaType", MANIFEST)), [blob(d["digest"]) for d in named]


def _upload(
    pusher: Pusher, source: Path, reference: http.OciReference, kind: str
) -> tuple[str, list[str]]:
    """Push the layout (`container`) or the file of `kind`: (the digest to pin, the summary)."""
    if kind == "container":
        body, media_type, blobs = _layout_blobs(source)
        print(f"pushing image {source} ({len(blobs)} blobs) to {reference}", file=sys.stderr)
        for data in blobs:
            pusher.blob(data)
        digest = pusher.manifest(body, media_type)
        return digest, [f"pinned: {reference.registry}/{reference.name}@{digest}"]
    data = source.read_bytes()
    print(f"pushing {source.name} ({len(data)} bytes, {kind}) to {reference}", file=sys.stderr)
    pusher.blob(EMPTY)
    digest = pusher.blob(data)
    artifact = artifact_manifest(kind, source.name, data)
    body = json.dumps(artifact, sort_keys=True, separators=(",", ":")).encode()
    return digest, [f"file digest: {digest}", f"manifest digest: {pusher.manifest(body, MANIFEST)}"]


def _report(
    manifest: dict[str, Any] | None,
    kind: str,
    reference: http.OciReference,
    digest: str,
    lines: list[str],
) -> None:
    """The implementation lines to paste, or with --pin the pinned manifest (summary: stderr)."""
    if manifest is None:
        print("\n".join(lines))
        print(implementation_lines(kind, reference, digest), end="")
        return
    print("\n".join(lines), file=sys.stderr)
    document, signed = pinned(manifest, kind, reference, digest)
    if signed:
        print("the signature covered the old artifact and was dropped: sign again", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, width=100))


def run_push(args: argparse.Namespace) -> int:
    source: Path = args.source
    try:
        reference = http.oci_reference(args.reference, "REF")
        opener = http.trusting(args.ca_file.read_text() if args.ca_file else None)
        config = args.registry_config.read_bytes() if args.registry_config else None
        manifest = read_manifest(args.pin, args.image) if args.pin else None
        if args.image:
            kind = "container"
        else:
            given = args.type or (manifest["spec"]["implementation"]["type"] if manifest else None)
            kind = plugin_type(source, given)
    except http.FetchError as error:
        return _fail(error.message)
    except OSError as error:
        return _fail(f"cannot read {error.filename}: {error.strerror}")
    except ValueError as error:
        return _fail(str(error))
    auth = http.basic_auth(config, str(reference)) if config else None
    if config and auth is None:
        return _fail(f"--registry-config has no credentials for {reference.registry}")
    pusher = Pusher(http.Registry(reference, auth, opener, actions="pull,push"))
    base = f"https://{reference.registry}"
    started = time.monotonic()
    try:
        digest, lines = _upload(pusher, source, reference, kind)
    except (ImageError, ValueError) as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot read {error.filename}: {error.strerror}")
    except http.FetchError as error:
        if isinstance(error.__cause__, urllib.error.HTTPError) or error.kind == "SecurityError":
            return _fail(f"registry {base} refused the upload: {error.message}", REFUSED)
        hint = " (trust its CA with --ca-file)" if "CERTIFICATE_VERIFY" in error.message else ""
        return _fail(f"cannot reach registry {base}: {error.message}{hint}", REFUSED)
    took = time.monotonic() - started
    print(
        f"pushed in {took:.1f}s ({pusher.uploaded} bytes sent), tagged {reference.tag}",
        file=sys.stderr,
    )
    _report(manifest, kind, reference, digest, lines)
    return 0
