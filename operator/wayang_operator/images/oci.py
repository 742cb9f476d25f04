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
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

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


Layer = Sequence[File] | Path
"""A layer: files (made into a tar here), or the path of a prebuilt uncompressed tar (a root
filesystem is too big to hold as File objects), used byte for byte."""


@dataclass(frozen=True)
class ImageSpec:
    name: str
    """Full reference the layout carries (`localhost/wayang/x:1.0`), as containerd wants it."""
    layers: Sequence[Layer]
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


class _Hashing:
    """A writable file that hashes what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha256, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


_packed: dict[tuple[str, int, int], tuple[str, dict[str, Any], Path]] = {}
"""Prebuilt tars already compressed by this process: (path, size, mtime) -> (diff_id, blob
descriptor, a blob file holding it), so that images sharing a base compress it once."""


def _tar_blob(layout: Path, tar: Path) -> tuple[str, dict[str, Any]]:
    """The diff_id and blob of a prebuilt tar, gzip-streamed into the layout (mtime 0, no name)."""
    stat = tar.stat()
    key = (str(tar.resolve()), stat.st_size, stat.st_mtime_ns)
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    known = _packed.get(key)
    if known is not None and known[2].is_file():
        diff_id, blob, source = known
        target = blobs / source.name
        if not target.exists():  # (the same tar twice in one image needs one blob)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        return diff_id, blob
    raw = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=blobs, prefix=".layer-", delete=False) as partial:
        packed = _Hashing(partial)
        try:
            with (
                tar.open("rb") as source_file,
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=packed, compresslevel=6, mtime=0
                ) as gz,
            ):
                while chunk := source_file.read(1 << 20):
                    raw.update(chunk)
                    gz.write(chunk)
        except BaseException:
            Path(partial.name).unlink(missing_ok=True)
            raise
    target = blobs / packed.sha256.hexdigest()
    Path(partial.name).replace(target)
    target.chmod(0o644)
    diff_id = f"sha256:{raw.hexdigest()}"
    blob = {"digest": f"sha256:{packed.sha256.hexdigest()}", "size": packed.size}
    _packed[key] = (diff_id, blob, target)
    return diff_id, blob


def build(spec: ImageSpec, layout: Path) -> Image:
    """Write `spec` as an OCI image layout directory at `layout` (created, must not exist)."""
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layers, diff_ids = [], []
    for layer in spec.layers:
        if isinstance(layer, Path):
            diff_id, blob = _tar_blob(layout, layer)
            diff_ids.append(diff_id)
            layers.append({"mediaType": LAYER, **blob})
            continue
        raw = _tar_layer(layer)
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
