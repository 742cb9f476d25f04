#!/usr/bin/env python3
"""Build the Python runtime image and one image per sample plugin as OCI archives, with no Docker.

    .venv/bin/python runtime-images/build.py --out .images      (or: make images)

Every image has three parts, as layers:
  1. a Debian bookworm root filesystem made by `mmdebstrap` (variant essential, plus
     python3-minimal and python3-jsonschema), a plain tar cached under
     ${WAYANG_CACHE:-${XDG_CACHE_HOME:-~/.cache}/wayang}/images/ and keyed by every parameter
     that shapes it;
  2. the runtime host: /opt/wayang/host.py and the ErrorPayload schema;
  3. (sample images only) the plugin: its module(s) in /opt/wayang/plugin and its descriptor,
     with implementation.digest set to the digest of the module code, in /etc/wayang/plugin.json.

The images are written by the project's builder (wayang_operator.images.oci) as OCI layout
directories and tars (`ctr images import`, `trivy image --input`, `skopeo copy oci-archive:`).
Layers 2 and 3 are byte-for-byte reproducible; the root filesystem is reproducible for a given
set of package versions (SOURCE_DATE_EPOCH, fixed mirror list): pass a snapshot.debian.org
mirror with --mirror to pin those too. mmdebstrap is installed with apt-get when missing (as
root); as root it runs in root mode, otherwise in unshare mode (which needs user namespaces).

Progress goes to stderr; stdout gets one JSON object: image name -> {digest, layout, tar, size}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from wayang_operator.images.cache import cache_root, locked
    from wayang_operator.images.oci import File, Image, ImageSpec, build, to_tar
except ImportError as missing:  # pragma: no cover - a hint for running it with the wrong Python
    sys.exit(
        f"build.py needs the wayang_operator package: run it with .venv/bin/python ({missing})"
    )

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = HERE / "python" / "host.py"
SAMPLES = HERE / "python" / "samples"
ERROR_SCHEMA = REPO / "schemas" / "ErrorPayload.schema.json"

RECIPE = 1
"""Bump when the root filesystem recipe changes in a way its parameters do not show."""
SUITE = "bookworm"
VARIANT = "essential"
PACKAGES = ("python3-minimal", "python3-jsonschema")
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
DEFAULT_EPOCH = 1704067200  # 2024-01-01T00:00:00Z: file times are clamped to it
USER = 65532
DPKG_OPTIONS = (
    # no manuals, documentation (but the copyright files) or translations: a plugin host reads none
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
)
HOOKS = (
    # merged /usr with symlinks and the usr-is-merged package: without it apt picks usrmerge,
    # which pulls in all of perl (50 MB)
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    # the user the container runs as, so that tools that look the user up find one
    f"--customize-hook=echo 'wayang:x:{USER}:{USER}:Wayang plugin:/nonexistent:/usr/sbin/nologin'"
    ' >> "$1/etc/passwd"',
    f"--customize-hook=echo 'wayang:x:{USER}:' >> \"$1/etc/group\"",
)
ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
    "WAYANG_DESCRIPTOR=/etc/wayang/plugin.json",
    "WAYANG_PLUGIN_PATH=/opt/wayang/plugin",
    "WAYANG_SCHEMA_DIR=/opt/wayang/schemas",
    "PORT=8080",
)
ENTRYPOINT = ("python3", "/opt/wayang/host.py")


class BuildError(RuntimeError):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    sys.stderr.write(f"[images] {message}\n")
    sys.stderr.flush()


def cache_dir() -> Path:
    return cache_root() / "images"


def host_version() -> str:
    found = re.search(r'^VERSION = "([^"]+)"', HOST.read_text(), re.MULTILINE)
    if found is None:
        raise BuildError(f"{HOST} has no VERSION")
    return found.group(1)


def _run(command: Sequence[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(  # noqa: S603 - fixed programs, arguments built here
        list(command), env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise BuildError(f"{command[0]} failed (exit {result.returncode}):\n{tail}")


def ensure_mmdebstrap() -> str:
    """The mmdebstrap program, installing the Debian package if we may (root with apt-get)."""
    found = shutil.which("mmdebstrap")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        raise BuildError(
            "mmdebstrap is not installed: install it (Debian/Ubuntu: `sudo apt-get install "
            "mmdebstrap`) or run this as root, which installs it"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = (apt_get, "install", "-y", "--no-install-recommends", "mmdebstrap")
    log("installing the Debian package mmdebstrap (apt-get install)")
    try:
        _run(install, env)
    except BuildError:
        log("apt-get install failed; running apt-get update and trying again")
        _run((apt_get, "update"), env)
        _run(install, env)
    found = shutil.which("mmdebstrap")
    if not found:
        raise BuildError("apt-get installed mmdebstrap but it is not on PATH")
    return found


def rootfs_arguments(mirrors: Sequence[str]) -> list[str]:
    """mmdebstrap's arguments after the program and mode: everything that shapes the tree."""
    return [
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        "--format=tar",
        "--skip=output/dev",  # no device nodes in the layer: the runtime provides /dev
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        *HOOKS,
        SUITE,
        "OUTPUT",
        *mirrors,
    ]


def ensure_rootfs(mirrors: Sequence[str], epoch: int, *, refresh: bool) -> Path:
    """The base root filesystem tar, from the cache or made with mmdebstrap."""
    arguments = rootfs_arguments(mirrors)
    key_source = {"recipe": RECIPE, "arguments": arguments, "epoch": epoch, "arch": "amd64"}
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir()
    tar = cache / f"rootfs-{SUITE}-{key}.tar"
    with locked(cache / f"rootfs-{SUITE}-{key}.lock", log):
        if tar.is_file() and not refresh:
            log(f"base root filesystem: cached {tar} ({tar.stat().st_size / 1e6:.1f} MB)")
            return tar
        program = ensure_mmdebstrap()
        mode = "root" if os.geteuid() == 0 else "unshare"
        partial = tar.with_suffix(".partial.tar")
        partial.unlink(missing_ok=True)
        command = [program, f"--mode={mode}"]
        command += [str(partial) if arg == "OUTPUT" else arg for arg in arguments]
        log(
            f"base root filesystem: mmdebstrap {SUITE} {VARIANT} + {', '.join(PACKAGES)} "
            f"({mode} mode; about a minute, network needed)"
        )
        started = time.monotonic()
        try:
            _run(command, {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(tar)
        (cache / f"rootfs-{SUITE}-{key}.json").write_text(
            json.dumps({**key_source, "sha256": _sha256(tar)}, indent=2) + "\n"
        )
        log(
            f"base root filesystem: {tar} ({tar.stat().st_size / 1e6:.1f} MB) "
            f"in {time.monotonic() - started:.0f} s"
        )
        return tar


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def host_layer() -> list[File]:
    return [
        File("/opt/wayang/host.py", HOST.read_bytes()),
        File("/opt/wayang/schemas/ErrorPayload.schema.json", ERROR_SCHEMA.read_bytes()),
    ]


def code_digest(modules: Sequence[Path]) -> str:
    """implementation.digest of a Python plugin: the sha256 of its one module file (what
    `sha256sum` prints), or of the `sha256sum` listing of several, sorted by name."""
    if len(modules) == 1:
        return "sha256:" + hashlib.sha256(modules[0].read_bytes()).hexdigest()
    listing = "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n" for path in modules
    )
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def sample_layer(folder: Path) -> tuple[dict[str, Any], list[File]]:
    """A sample's descriptor (its digest filled in) and its plugin layer."""
    descriptor = json.loads((folder / "plugin.json").read_text())
    modules = sorted(folder.glob("*.py"))
    if not modules:
        raise BuildError(f"{folder}: no Python module")
    descriptor["implementation"]["digest"] = code_digest(modules)
    files = [File(f"/opt/wayang/plugin/{path.name}", path.read_bytes()) for path in modules]
    document = json.dumps(descriptor, indent=2) + "\n"
    files.append(File("/etc/wayang/plugin.json", document.encode()))
    return descriptor, files


def _labels(title: str, version: str, **extra: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": f"debian:{SUITE} ({VARIANT}, mmdebstrap)",
        "io.wayang.runtime": "python",
        **extra,
    }


def specs(rootfs: Path) -> list[tuple[str, ImageSpec]]:
    """(folder name, spec) of the runtime image and of every sample's image."""
    version = host_version()
    host = host_layer()
    common: dict[str, Any] = {
        "entrypoint": ENTRYPOINT,
        "env": ENV,
        "user": f"{USER}:{USER}",
        "workdir": "/opt/wayang",
    }
    images = [
        (
            "runtime-python",
            ImageSpec(
                f"localhost/wayang/runtime-python:{version}",
                [rootfs, host],
                labels=_labels("Wayang Python runtime host", version),
                **common,
            ),
        )
    ]
    for folder in sorted(path for path in SAMPLES.iterdir() if (path / "plugin.json").is_file()):
        descriptor, plugin = sample_layer(folder)
        labels = _labels(
            str(descriptor["name"]),
            str(descriptor["version"]),
            **{
                "io.wayang.plugin.id": str(descriptor["id"]),
                "io.wayang.plugin.digest": str(descriptor["implementation"]["digest"]),
                "io.wayang.runtime.version": version,
            },
        )
        name = f"localhost/wayang/sample-{folder.name}:{descriptor['version']}"
        images.append(
            (
                f"sample-{folder.name}",
                ImageSpec(name, [rootfs, host, plugin], labels=labels, **common),
            )
        )
    return images


def layout_size(image: Image) -> int:
    """Bytes of all blobs: what a registry stores and a node pulls (layers compressed)."""
    return sum(
        path.stat().st_size for path in (image.layout / "blobs").rglob("*") if path.is_file()
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (made if missing)")
    parser.add_argument(
        "--mirror",
        action="append",
        help="a sources.list line or mirror URL for mmdebstrap (repeatable; default: "
        "deb.debian.org bookworm and bookworm-security, or $WAYANG_DEBIAN_MIRROR)",
    )
    parser.add_argument(
        "--refresh", action="store_true", help="rebuild the cached root filesystem (new packages)"
    )
    args = parser.parse_args(argv)
    mirrors = args.mirror or (
        [os.environ["WAYANG_DEBIAN_MIRROR"]]
        if os.environ.get("WAYANG_DEBIAN_MIRROR")
        else list(MIRRORS)
    )
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)
    started = time.monotonic()
    try:
        rootfs = ensure_rootfs(mirrors, epoch, refresh=args.refresh)
        out: Path = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        result: dict[str, dict[str, Any]] = {}
        for folder, spec in specs(rootfs):
            began = time.monotonic()
            layout, archive = out / folder, out / f"{folder}.tar"
            shutil.rmtree(layout, ignore_errors=True)
            archive.unlink(missing_ok=True)
            image = build(spec, layout)
            to_tar(layout, archive)
            size = layout_size(image)
            log(
                f"{spec.name} {image.digest} ({size / 1e6:.1f} MB compressed) "
                f"in {time.monotonic() - began:.1f} s"
            )
            result[spec.name] = {
                "digest": image.digest,
                "layout": str(layout),
                "tar": str(archive),
                "size": size,
            }
    except BuildError as error:
        log(f"failed: {error}")
        return 1
    log(f"{len(result)} images in {out} in {time.monotonic() - started:.0f} s")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
