"""OCI image layouts built without Docker: reproducible digests; archives hold one image."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from wayang_operator.images.oci import File, ImageError, ImageSpec, build, manifest_digest, to_tar

SPEC = ImageSpec("localhost/test/x:1", [[File("app/a.py", b"print(1)\n"), File("/etc/b", b"b")]])


def test_the_same_files_give_the_same_digest(tmp_path: Path) -> None:
    first, second = build(SPEC, tmp_path / "a"), build(SPEC, tmp_path / "b")
    assert first.digest == second.digest
    assert first.digest.startswith("sha256:")
    changed = ImageSpec(SPEC.name, [[File("app/a.py", b"print(2)\n")]])
    assert build(changed, tmp_path / "c").digest != first.digest


def test_the_layout_and_its_tar_name_the_same_image(tmp_path: Path) -> None:
    image = build(SPEC, tmp_path / "layout")
    index = json.loads((image.layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == SPEC.name
    archive = to_tar(image.layout, tmp_path / "image.tar")
    assert manifest_digest(image.layout) == manifest_digest(archive) == image.digest
    with tarfile.open(archive) as tar:
        assert {"oci-layout", "index.json"} <= set(tar.getnames())


def test_layers_hold_parent_directories_owned_by_root(tmp_path: Path) -> None:
    image = build(SPEC, tmp_path / "layout")
    blobs = sorted((image.layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    layer = next(p for p in blobs if p.read_bytes()[:2] == b"\x1f\x8b")
    with tarfile.open(layer) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"app", "app/a.py", "etc", "etc/b"} <= set(members)
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


def test_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not an OCI image layout"):
        manifest_digest(tmp_path)
    (tmp_path / "index.json").write_text('{"manifests": []}')
    with pytest.raises(ImageError, match="exactly one image"):
        manifest_digest(tmp_path)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(ImageError):
        manifest_digest(garbage)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _prebuilt_tar(path: Path, content: bytes) -> bytes:
    """A small 'root filesystem' tar as mmdebstrap would write it: `./` names, real mtimes."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("./etc/os-release", b"ID=debian\n"), ("./usr/bin/tool", content)]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o755
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def test_a_prebuilt_tar_is_a_layer_byte_for_byte(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    raw = _prebuilt_tar(rootfs, b"#!/bin/sh\n")
    spec = ImageSpec("localhost/test/base:1", [rootfs, [File("app/a.py", b"print(1)\n")]])
    first, second = build(spec, tmp_path / "a"), build(spec, tmp_path / "b")
    assert first.digest == second.digest
    manifest = json.loads(_blob(first.layout, first.digest))
    config = json.loads(_blob(first.layout, manifest["config"]["digest"]))
    layer = manifest["layers"][0]
    blob = _blob(first.layout, layer["digest"])
    assert layer["size"] == len(blob)
    assert layer["digest"] == f"sha256:{hashlib.sha256(blob).hexdigest()}"
    assert blob[3] == 0, "no file name (or other optional field) in the gzip header"
    assert blob[4:8] == b"\x00\x00\x00\x00", "gzip mtime 0"
    assert gzip.decompress(blob) == raw
    assert config["rootfs"]["diff_ids"][0] == f"sha256:{hashlib.sha256(raw).hexdigest()}"
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 2
    archive = to_tar(first.layout, tmp_path / "base.tar")
    assert manifest_digest(archive) == first.digest
    assert not list((first.layout / "blobs" / "sha256").glob(".layer-*")), "no partial blobs left"
    _prebuilt_tar(rootfs, b"#!/bin/sh\necho changed\n")
    assert build(spec, tmp_path / "c").digest != first.digest
