"""Build OCI images as image layouts (a directory, or that directory as a tar), with no Docker.

Air-gapped clusters and the tests need images that no registry serves: trivy scans a layout
directory (`trivy image --input DIR`), and containerd imports the tar (`ctr images import`).
Builds are reproducible: fixed timestamps, owners and order, so the same files always give the
same manifest digest, which is what a Plugin pins and what its signature covers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


class ImageError(ValueError):
    """An archive or layout that is not a single-image OCI layout."""


@dataclass(frozen=True)
class File:
    path: str
    """Path inside the image (leading `/` optional)."""
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class ImageSpec:
    name: str
    """Full reference the layout carries (`localhost/wayang/x:1.0`), as containerd wants it."""
    layers: Sequence[Sequence[File]]
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Sequence[str] = ()
    user: str = "65532:65532"
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    name: str
    digest: str
    """The manifest digest (`sha256:…`): what `coordinate@digest` pins."""
    layout: Path


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _tar_layer(files: Iterable[File]) -> bytes:
    """An uncompressed layer tar: parent directories first, every entry owned by root, mtime 0."""
    entries: dict[str, File | None] = {}
    for added in files:
        path = PurePosixPath(added.path.lstrip("/"))
        for parent in reversed(path.parents[:-1]):
            entries.setdefault(str(parent), None)
        entries[str(path)] = added
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            file = entries[name]
            info = tarfile.TarInfo(name + ("/" if file is None else ""))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if file is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(file.data), file.mode
                tar.addfile(info, io.BytesIO(file.data))
    return out.getvalue()


def build(spec: ImageSpec, layout: Path) -> Image:
    """Write `spec` as an OCI image layout directory at `layout` (created, must not exist)."""
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layers, diff_ids = [], []
    for files in spec.layers:
        raw = _tar_layer(files)
        diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
        compressed = gzip.compress(raw, compresslevel=6, mtime=0)
        layers.append({"mediaType": LAYER, **_blob(layout, compressed)})
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": spec.user,
            "Env": list(spec.env),
            "Entrypoint": list(spec.entrypoint) or None,
            "Cmd": list(spec.cmd) or None,
            "WorkingDir": spec.workdir,
            "Labels": dict(spec.labels) or None,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "wayang-operator images.oci"} for _ in diff_ids],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, **_blob(layout, _canonical(config))},
        "layers": layers,
    }
    descriptor = {"mediaType": MANIFEST, **_blob(layout, _canonical(manifest))}
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{**descriptor, "annotations": {REF_NAME: spec.name}}],
    }
    (layout / "index.json").write_bytes(_canonical(index))
    return Image(spec.name, str(descriptor["digest"]), layout)


def to_tar(layout: Path, archive: Path) -> Path:
    """The layout as a tar (what `ctr images import` takes); entries in a stable order."""
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            info = tar.gettarinfo(str(path), str(path.relative_to(layout)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
    return archive


def _read_index(source: Path) -> dict[str, Any]:
    try:
        if source.is_dir():
            text = (source / "index.json").read_bytes()
        else:
            with tarfile.open(source) as tar:
                member = tar.extractfile("index.json")
                if member is None:
                    raise KeyError("index.json")
                text = member.read()
        index = json.loads(text)
    except (OSError, KeyError, tarfile.TarError, ValueError) as error:
        raise ImageError(f"{source}: not an OCI image layout ({error})") from error
    if not isinstance(index, dict):
        raise ImageError(f"{source}: index.json is not an object")
    return index


def manifest_digest(source: Path) -> str:
    """The digest of the one image in a layout directory or layout tar."""
    manifests = _read_index(source).get("manifests") or []
    images = [m for m in manifests if isinstance(m, dict) and m.get("mediaType") == MANIFEST]
    if len(images) != 1:
        raise ImageError(f"{source}: expected exactly one image manifest, found {len(images)}")
    return str(images[0].get("digest", ""))
