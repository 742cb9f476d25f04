#!/usr/bin/env python3
"""Build the Python runtime image, one image per sample plugin and the operator's own image as OCI
archives, with no Docker.

    .venv/bin/python runtime-images/build.py --out .images      (or: make images)
    .venv/bin/python runtime-images/build.py --out .images --only wayang-operator

Every image has three parts, as layers:
  1. a Debian bookworm root filesystem made by `mmdebstrap` (variant essential, plus
     python3-minimal and python3-jsonschema), a plain tar cached under
     ${WAYANG_CACHE:-${XDG_CACHE_HOME:-~/.cache}/wayang}/images/ and keyed by every parameter
     that shapes it;
  2. the runtime host: /opt/wayang/host.py, its plugin API /opt/wayang/lib/wayang_plugin.py, the
     ErrorPayload schema, the wasm and JVM executors and the JVM host's jar (compiled here with
     javac, so the build needs a JDK 17);
  3. (sample images only) the plugin: its module(s) in /opt/wayang/plugin and its descriptor,
     with implementation.digest set to the digest of the module code, in /etc/wayang/plugin.json.

The operator's image (`localhost/wayang/wayang-operator:<pyproject version>`) has four layers:
a root filesystem made the same way with python3, ca-certificates and libstdc++6; the pinned trivy
of e2e/localcluster/build.py; the wheels of [project.dependencies] as pip resolves them for
bookworm's cp311 (the resolution cached as a lock, the layer under the lock's key); and the
operator, from `pip wheel` of this tree (the only layer a code change rebuilds).

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
import base64
import configparser
import fnmatch
import hashlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, NamedTuple

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
PLUGIN_API = HERE / "python" / "lib" / "wayang_plugin.py"
SAMPLES = HERE / "python" / "samples"
WASM_SAMPLES = HERE / "wasm" / "samples"
"""wasm plugins: each folder a WAT source and its descriptor (`wasm_module` compiles it)."""
WASM_EXECUTOR = HERE / "python" / "wayang_wasm.py"
JVM_EXECUTOR = HERE / "python" / "wayang_jvm.py"
ABI = HERE / "python" / "wayang_abi.py"
"""What the wasm and JVM executors share (the plugin ABI's answer)."""
JVM_HOST = HERE / "jvm" / "host" / "src"
"""The JVM host's Java sources (io.wayang.jvm.Host and its helpers), compiled by jvm_host_jar."""
JVM_HOST_JAR = "/opt/wayang/jvm/wayang-jvm-host.jar"
"""Where wayang_jvm.py finds the JVM host in the image (beside it: HERE/jvm/)."""
JVM_SAMPLES = HERE / "jvm" / "samples"
"""jar plugins: each folder Java sources under src/ and a descriptor (`jar_sample` builds it)."""
JAVA_RELEASE = "17"
ERROR_SCHEMA = REPO / "schemas" / "ErrorPayload.schema.json"
FETCHER = REPO / "operator" / "wayang_operator" / "fetching" / "http.py"
"""The artifact fetcher hosted plugins' pods run before the host (the operator's own module)."""

RECIPE = 1
"""Bump when the root filesystem recipe changes in a way its parameters do not show."""
SUITE = "bookworm"
VARIANT = "essential"
PACKAGES = ("python3-minimal", "python3-jsonschema", "libstdc++6")
"""libstdc++6: google-re2's wheel links it (cel-python, one of the host's libraries, imports it)."""
JVM = "runtime-jvm"
"""The JVM runtime host image's folder and `--only` name: the Python host and Debian's JRE, on
which `jar` and `maven` plugins run (the host starts the JVM, which loads the plugin's jar)."""
JVM_PACKAGES = (*PACKAGES, "openjdk-17-jre-headless")
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
    # the manual folders stay empty (DPKG_OPTIONS) but must exist: update-alternatives links a
    # manual page for every alternative (the JRE's java), and fails if its folder is missing
    '--setup-hook=mkdir -p "$1/usr/share/man/man1"',
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


def rootfs_arguments(mirrors: Sequence[str], packages: Sequence[str] = PACKAGES) -> list[str]:
    """mmdebstrap's arguments after the program and mode: everything that shapes the tree."""
    return [
        f"--variant={VARIANT}",
        f"--include={','.join(packages)}",
        "--format=tar",
        "--skip=output/dev",  # no device nodes in the layer: the runtime provides /dev
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        *HOOKS,
        SUITE,
        "OUTPUT",
        *mirrors,
    ]


def ensure_rootfs(
    mirrors: Sequence[str], epoch: int, *, refresh: bool, packages: Sequence[str] = PACKAGES
) -> Path:
    """The base root filesystem tar, from the cache or made with mmdebstrap (with `packages`
    on top of the essential set: the runtime's by default, the operator image's otherwise)."""
    arguments = rootfs_arguments(mirrors, packages)
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
            f"base root filesystem: mmdebstrap {SUITE} {VARIANT} + {', '.join(packages)} "
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
        File("/opt/wayang/fetch.py", FETCHER.read_bytes()),
        File("/opt/wayang/wayang_wasm.py", WASM_EXECUTOR.read_bytes()),
        File("/opt/wayang/wayang_jvm.py", JVM_EXECUTOR.read_bytes()),
        File("/opt/wayang/wayang_abi.py", ABI.read_bytes()),
        File(JVM_HOST_JAR, jvm_host_jar()),
        File("/opt/wayang/lib/wayang_plugin.py", PLUGIN_API.read_bytes()),
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


def wasm_module(folder: Path) -> tuple[str, bytes]:
    """A wasm sample as a `wasm` plugin artifact (file name, bytes): its WAT source compiled by
    wasmtime's wat2wasm (the same bytes on every build, so a descriptor can pin its sha256)."""
    import wasmtime  # noqa: PLC0415 - only wasm builds need it (the project's dev extra has it)

    descriptor = json.loads((folder / "plugin.json").read_text())
    (source,) = sorted(folder.glob("*.wat"))
    module = bytes(wasmtime.wat2wasm(source.read_text()))
    return f"{descriptor['implementation']['coordinate']}-{descriptor['version']}.wasm", module


WHEEL_TIME = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(folder: Path, *, bundles: Sequence[tuple[str, str]] = ()) -> tuple[str, bytes]:
    """A sample as a `python` plugin artifact: a wheel (file name, bytes) with its modules at
    the top, named after its coordinate and version, byte for byte the same on every build (so
    a descriptor can pin its sha256). `bundles` adds the dist-info of vendored packages
    (name, version), as a wheel that bundles its dependencies carries them: what trivy reads."""
    descriptor = json.loads((folder / "plugin.json").read_text())
    dist = re.sub(r"[-_.]+", "_", str(descriptor["implementation"]["coordinate"]))
    version = str(descriptor["version"])
    info = f"{dist}-{version}.dist-info"
    files = [(path.name, path.read_bytes()) for path in sorted(folder.glob("*.py"))]
    files.append(
        (f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode())
    )
    files.append(
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: wayang-build\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
        )
    )
    for name, bundled in bundles:
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {bundled}\n".encode()
        files.append((f"{name}-{bundled}.dist-info/METADATA", meta))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    files.append((f"{info}/RECORD", (record + f"{info}/RECORD,,\n").encode()))
    return f"{dist}-{version}-py3-none-any.whl", _zip(files)


def _zip(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip (a wheel, a jar) of `files` in that order, with fixed times and modes: the same
    bytes on every build."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            entry = zipfile.ZipInfo(name, WHEEL_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return buffer.getvalue()


def _javac(sources: Path) -> list[tuple[str, bytes]]:
    """The classes of the Java sources below `sources` (JDK only, `javac --release 17`), as
    (path in a jar, bytes) sorted by path; javac writes the same bytes for the same sources."""
    javac = shutil.which("javac")
    if javac is None:
        raise BuildError("javac is missing: install a JDK 17 (Debian: default-jdk-headless)")
    files = sorted(str(path) for path in sources.rglob("*.java"))
    if not files:
        raise BuildError(f"{sources}: no Java source")
    with tempfile.TemporaryDirectory(prefix="wayang-javac-") as out:
        _run([javac, "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-d", out, *files])
        return sorted(
            (path.relative_to(out).as_posix(), path.read_bytes())
            for path in Path(out).rglob("*.class")
        )


def _manifest(**attributes: str) -> tuple[str, bytes]:
    lines = ["Manifest-Version: 1.0", "Created-By: wayang-build"]
    lines += [f"{key}: {value}" for key, value in attributes.items()]
    return "META-INF/MANIFEST.MF", ("\r\n".join(lines) + "\r\n\r\n").encode()


def jvm_host_jar() -> bytes:
    """The JVM host (runtime-images/jvm/host) as a jar, the same bytes on every build."""
    return _zip([_manifest(**{"Main-Class": "io.wayang.jvm.Host"}), *_javac(JVM_HOST)])


def jar_sample(folder: Path) -> tuple[str, bytes]:
    """A JVM sample as a `jar` plugin artifact (file name, bytes): its classes, a manifest and
    the Maven coordinate of the descriptor (`group:artifact:version`) in
    META-INF/maven/<group>/<artifact>/pom.properties, as a Maven-built jar carries it (what a
    scanner identifies a jar by); the same bytes on every build, so a descriptor can pin them."""
    descriptor = json.loads((folder / "plugin.json").read_text())
    group, artifact, version = str(descriptor["implementation"]["coordinate"]).split(":")
    if version != descriptor["version"]:
        raise BuildError(f"{folder}: the coordinate's version {version} is not the descriptor's")
    pom = f"groupId={group}\nartifactId={artifact}\nversion={version}\n"
    files = [
        _manifest(**{"Implementation-Title": artifact, "Implementation-Version": version}),
        (f"META-INF/maven/{group}/{artifact}/pom.properties", pom.encode()),
        *_javac(folder / "src"),
    ]
    return f"{artifact}-{version}.jar", _zip(files)


EXAMPLE_REGISTRY = "registry.example.com/team-a"
"""Where the examples say their artifacts were pushed; `wayang push --pin` replaces it."""
UNPINNED = "sha256:" + "0" * 64
"""The examples' digest before `wayang push --pin` sets the pushed one."""
EXAMPLES = (
    ("container", SAMPLES / "echo", None),
    ("python", SAMPLES / "echo", wheel),
    ("wasm", WASM_SAMPLES / "echo", wasm_module),
    ("jar", JVM_SAMPLES / "echo", jar_sample),
    ("maven", JVM_SAMPLES / "echo", jar_sample),
)
"""The echo sample of each implementation type: (type, its source folder, what builds its
artifact; the container is the sample's image, `sample-echo`). maven is the jar published at
its `group:artifact:version`."""


def sample_artifacts(out: Path) -> dict[str, dict[str, str]]:
    """The artifact of every hosted type's echo sample, written into `out`:
    type -> {file, digest} (the same bytes on every build, built from source)."""
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, dict[str, str]] = {}
    for kind, folder, builder in EXAMPLES:
        if builder is None:
            continue
        name, data = builder(folder)
        path = out / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        built[kind] = {"file": str(path), "digest": "sha256:" + hashlib.sha256(data).hexdigest()}
    return built


def example_manifests() -> dict[str, str]:
    """examples/plugins/echo-<type>.yaml, one runnable Plugin per implementation type, made
    from the samples' descriptors (`make manifests` writes them; a unit test compares): the
    artifact at EXAMPLE_REGISTRY, not yet pinned (`wayang push --pin` pins what was pushed)."""
    import yaml  # noqa: PLC0415 - only the examples need it (the project's dependency)

    manifests = {}
    for kind, folder, _ in EXAMPLES:
        descriptor = json.loads((folder / "plugin.json").read_text())
        source = descriptor["implementation"]
        implementation = {"type": kind, "coordinate": source["coordinate"]}
        if kind == "container":
            implementation["coordinate"] = f"{EXAMPLE_REGISTRY}/echo"
        else:
            implementation["repository"] = f"oci://{EXAMPLE_REGISTRY}/echo-{kind}:1.0.0"
        implementation.update(digest=UNPINNED, entrypoint=source["entrypoint"])
        if "runtime" in source:
            implementation["runtime"] = source["runtime"]
        descriptor.update(
            id=f"io.wayang.samples/echo-{kind}",
            name=f"Echo ({kind})",
            implementation=implementation,
        )
        document = {
            "apiVersion": "wayang.io/v1alpha1",
            "kind": "Plugin",
            "metadata": {"name": f"echo-{kind}"},
            "spec": descriptor,
        }
        header = (
            f"# The echo sample as a {kind} plugin (built from {folder.relative_to(REPO)}).\n"
            "# Generated by `make manifests` (runtime-images/build.py); pin the artifact you\n"
            "# pushed with `wayang push FILE REF --pin` (docs/types.md).\n"
        )
        text = yaml.safe_dump(document, sort_keys=False, width=100)
        manifests[f"echo-{kind}.yaml"] = header + text
    return manifests


def _labels(title: str, version: str, **extra: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": f"debian:{SUITE} ({VARIANT}, mmdebstrap)",
        "io.wayang.runtime": "python",
        **extra,
    }


HOST_DEPENDENCIES = "opt/wayang/deps"
"""Where the runtime host's own libraries go (pyproject's `host` extra: CEL, OpenTelemetry): on
the host's sys.path, never on a plugin's (host.py takes it off in the workers)."""


def host_dependencies(*, refresh: bool, epoch: int) -> Path:
    """The layer of the runtime host's libraries, [project.optional-dependencies] `host`."""
    declared = pyproject()["optional-dependencies"]["host"]
    pins = resolve_dependencies(refresh=refresh, declared=declared, name="host")
    return ensure_dependencies_layer(pins, epoch, name="host", site_dir=HOST_DEPENDENCIES)


def runtime_layers(
    mirrors: Sequence[str], epoch: int, *, refresh: bool, packages: Sequence[str] = PACKAGES
) -> list[Path]:
    """The layers under the host in a runtime image and every sample's: the root filesystem
    (with `packages`: the JVM host's adds the JRE) and the host's libraries."""
    return [
        ensure_rootfs(mirrors, epoch, refresh=refresh, packages=packages),
        host_dependencies(refresh=refresh, epoch=epoch),
    ]


COMMON: dict[str, Any] = {
    "entrypoint": ENTRYPOINT,
    "env": ENV,
    "user": f"{USER}:{USER}",
    "workdir": "/opt/wayang",
}
"""What every runtime host image runs: the host, as the unprivileged user."""


def jvm_spec(base: Sequence[Path]) -> ImageSpec:
    """The JVM runtime host image over `base` (runtime_layers with JVM_PACKAGES): the same host
    and layer as the Python one, so the node contract is the same code."""
    version = host_version()
    return ImageSpec(
        f"localhost/wayang/{JVM}:{version}",
        [*base, host_layer()],
        labels=_labels("Wayang JVM runtime host", version, **{"io.wayang.jre": "openjdk-17"}),
        **COMMON,
    )


def specs(base: Sequence[Path]) -> list[tuple[str, ImageSpec]]:
    """(folder name, spec) of the Python runtime image and of every sample's image, over the
    layers `base` (runtime_layers)."""
    version = host_version()
    host = host_layer()
    images = [
        (
            "runtime-python",
            ImageSpec(
                f"localhost/wayang/runtime-python:{version}",
                [*base, host],
                labels=_labels("Wayang Python runtime host", version),
                **COMMON,
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
                ImageSpec(name, [*base, host, plugin], labels=labels, **COMMON),
            )
        )
    return images


# ------------------------------------------------------------------------------------------------
# The operator's own image

OPERATOR = "wayang-operator"
"""The operator image's folder and `--only` name; its reference is localhost/wayang/<it>:<version>
of pyproject.toml (the runtime and sample images' convention)."""
OPERATOR_RECIPE = 1
"""Bump when the operator image's layers change in a way their keys do not show."""
OPERATOR_PACKAGES = ("python3", "ca-certificates", "libstdc++6")
"""python3, not python3-minimal: asyncio, ssl, sqlite3, zoneinfo and the like are in
libpython3.11-stdlib. ca-certificates: trivy downloads its database over TLS (Go reads
/etc/ssl/certs); the Python side carries certifi with the kubernetes client. libstdc++6: manylinux
wheels may link it without bundling it, and google-re2's does (cel-python imports it)."""
PYTHON = "3.11"
"""bookworm's python3: the wheels are resolved for it (cp311)."""
GLIBC_MINOR = 36
"""bookworm's glibc is 2.36: every manylinux wheel for glibc 2.36 or older runs."""
WHEEL_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
"""pip takes `--platform` literally (manylinux_2_36 does not imply older tags, nor the legacy
aliases of 2_17, 2_12 and 2_5): all are listed. Without manylinux1, wasmtime resolved to its
py3-none-any wheel, which has no _libwasmtime.so."""
SITE_PACKAGES = f"usr/local/lib/python{PYTHON}/dist-packages"
"""On Debian's python3 sys.path, ahead of /usr/lib/python3/dist-packages: no PYTHONPATH needed."""
SCAN_CACHE = "/var/cache/wayang"
"""trivy's cache lives in <it>/trivy: the chart mounts an emptyDir or a PVC on <it>."""
OPERATOR_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "PYTHONDONTWRITEBYTECODE=1",  # the bytecode is compiled in the image; the root is read-only
    "PYTHONUNBUFFERED=1",
    "HOME=/tmp",  # the one writable place with a read-only root (an emptyDir); nothing reads ~
    "WAYANG_TRIVY=/usr/local/bin/trivy",
    f"WAYANG_SCAN_CACHE_DIR={SCAN_CACHE}/trivy",
)
OPERATOR_ENTRYPOINT = ("/usr/local/bin/wayang-operator",)


class Pin(NamedTuple):
    """One resolved dependency: a wheel by name, version and hash (a line of the lock). (Named
    tuples, not dataclasses: tests load this script without registering it in sys.modules, where
    dataclasses look their module up.)"""

    name: str
    version: str
    url: str
    sha256: str

    def requirement(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"


class TarEntry(NamedTuple):
    """One entry of a layer written by `write_layer`."""

    path: str
    """Inside the image, without the leading `/`."""
    source: Path | bytes | None = None
    """A file to copy, the content itself, or None for a directory."""
    mode: int = 0o644
    owner: int = 0


def _key(document: object) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        project: dict[str, Any] = tomllib.load(handle)["project"]
    return project


def pip_platform_options() -> list[str]:
    """pip's options for bookworm's interpreter: cp311 wheels for glibc <= 2.36, never sdists."""
    return [
        "--only-binary=:all:",
        "--implementation=cp",
        f"--python-version={PYTHON}",
        f"--abi=cp{PYTHON.replace('.', '')}",
        *(f"--platform={platform}" for platform in WHEEL_PLATFORMS),
    ]


def _canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_from_report(report: dict[str, Any]) -> list[Pin]:
    """The lock from pip's installation report (`pip install --dry-run --report`), sorted by
    name; every entry must be a wheel with a sha256, or the image would not be reproducible."""
    pins = []
    for item in report.get("install", []):
        metadata, download = item["metadata"], item["download_info"]
        archive = download.get("archive_info", {})
        sha256 = archive.get("hashes", {}).get("sha256")
        if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
            sha256 = archive["hash"].removeprefix("sha256=")
        url = str(download["url"])
        if not url.endswith(".whl") or not sha256:
            raise BuildError(f"{metadata['name']}: not a wheel with a sha256 ({url})")
        pins.append(Pin(str(metadata["name"]), str(metadata["version"]), url, str(sha256)))
    if not pins:
        raise BuildError("pip resolved no dependency")
    return sorted(pins, key=lambda pin: _canonical_name(pin.name))


def dependencies_key(
    pins: Sequence[Pin], epoch: int, bytecode: str | None, site: str = SITE_PACKAGES
) -> str:
    """The dependency layer's cache key: what was resolved (names, versions, wheel hashes), for
    which interpreter, where in the image, with which file times and which bytecode (the
    builder's Python version)."""
    return _key(
        {
            "recipe": OPERATOR_RECIPE,
            "pins": [[pin.name, pin.version, pin.sha256] for pin in pins],
            "options": pip_platform_options(),
            "site": site,
            "epoch": epoch,
            "bytecode": bytecode,
        }
    )


def tree_entries(folder: Path, prefix: str) -> list[TarEntry]:
    """Every directory and file under `folder`, placed under `prefix`; a file keeps only whether
    it is executable (0755 or 0644)."""
    entries = []
    for path in sorted(folder.rglob("*")):
        name = f"{prefix}/{path.relative_to(folder).as_posix()}"
        if path.is_symlink():
            raise BuildError(f"{path}: symbolic links are not expected here")
        if path.is_dir():
            entries.append(TarEntry(name, None, 0o755))
        else:
            executable = path.stat().st_mode & 0o111
            entries.append(TarEntry(name, path, 0o755 if executable else 0o644))
    return entries


def write_layer(out: Path, entries: Iterable[TarEntry], epoch: int) -> Path:
    """An uncompressed layer tar: parents first (root's, 0755), sorted, every time `epoch`, so the
    same entries always give the same bytes. Written next to `out` and renamed into place."""
    table: dict[str, TarEntry] = {}
    for entry in entries:
        path = PurePosixPath(entry.path.lstrip("/"))
        for parent in reversed(path.parents[:-1]):
            table.setdefault(str(parent), TarEntry(str(parent), None, 0o755))
        table[str(path)] = entry
    partial = out.with_name(f".{out.name}.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(table):
            entry = table[name]
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uname, info.gname = epoch, entry.mode, "", ""
            info.uid = info.gid = entry.owner
            if entry.source is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(entry.source, bytes):
                info.size = len(entry.source)
                tar.addfile(info, io.BytesIO(entry.source))
            else:
                info.size = entry.source.stat().st_size
                with entry.source.open("rb") as data:
                    tar.addfile(info, data)
    partial.replace(out)
    return out


def _bytecode() -> str | None:
    """The Python version the layers' bytecode is for: the builder's, when it is the image's
    (3.11 shares one bytecode format); else None, and the image compiles nothing (it starts
    about 2 s slower, since a read-only root cannot cache bytecode)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return version if version == PYTHON else None


def _compile(folder: Path, site: str = SITE_PACKAGES) -> None:
    """Bytecode for every module, checked by nothing (unchecked-hash: no file time in it, and
    the image's files never change), with the paths the modules have in the image (`site`)."""
    if _bytecode() is None:
        return
    _run(
        (
            sys.executable, "-m", "compileall", "-q", "-j", "0",
            "--invalidation-mode", "unchecked-hash",
            "-s", str(folder), "-p", f"/{site}", str(folder),
        )
    )  # fmt: skip


def resolve_dependencies(
    *, refresh: bool, declared: Sequence[str] | None = None, name: str = "operator"
) -> list[Pin]:
    """`declared` (default: [project.dependencies] of pyproject.toml) resolved by pip for the
    image's interpreter, as a lock cached under the declared list: later builds install the
    same versions (no network) until that list changes or --refresh resolves again."""
    declared = list(pyproject()["dependencies"] if declared is None else declared)
    key = _key({"recipe": OPERATOR_RECIPE, "declared": declared, "pip": pip_platform_options()})
    lock = cache_dir() / f"{name}-lock-{key}.json"
    with locked(lock.with_suffix(".lock"), log):
        if lock.is_file() and not refresh:
            pins = [Pin(**pin) for pin in json.loads(lock.read_text())["pins"]]
            log(f"dependencies: {len(pins)} wheels pinned by {lock}")
            return pins
        log(f"dependencies: resolving {len(declared)} requirements with pip (network needed)")
        with tempfile.TemporaryDirectory(dir=cache_dir()) as folder:
            report = Path(folder) / "report.json"
            _run(
                (
                    sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
                    "--ignore-installed", "--report", str(report),
                    "--target", str(Path(folder) / "target"),
                    *pip_platform_options(), *declared,
                )
            )  # fmt: skip
            pins = pins_from_report(json.loads(report.read_text()))
        document = {"declared": declared, "pins": [pin._asdict() for pin in pins]}
        lock.write_text(json.dumps(document, indent=2) + "\n")
        log(f"dependencies: {len(pins)} wheels pinned in {lock}")
        return pins


def ensure_dependencies_layer(
    pins: Sequence[Pin], epoch: int, *, name: str = "operator", site_dir: str = SITE_PACKAGES
) -> Path:
    """The resolved wheels installed (`pip install --target`, hashes required) into `site_dir`
    (default: site-packages), compiled, as a layer tar cached under `dependencies_key`."""
    key = dependencies_key(pins, epoch, _bytecode(), site_dir)
    tar = cache_dir() / f"{name}-deps-{key}.tar"
    with locked(tar.with_suffix(".lock"), log):
        if tar.is_file():
            log(f"dependencies layer: cached {tar} ({tar.stat().st_size / 1e6:.1f} MB)")
            return tar
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache_dir()) as folder:
            requirements, site = Path(folder) / "requirements.txt", Path(folder) / "site"
            requirements.write_text("".join(f"{pin.requirement()}\n" for pin in pins))
            _run(
                (
                    sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-compile", "--require-hashes", "--target", str(site),
                    *pip_platform_options(), "-r", str(requirements),
                )
            )  # fmt: skip
            # the dependencies' launchers name this builder's Python; the image runs none of them
            shutil.rmtree(site / "bin", ignore_errors=True)
            _compile(site, site_dir)
            write_layer(tar, tree_entries(site, site_dir), epoch)
        log(
            f"dependencies layer: {len(pins)} wheels, {tar} ({tar.stat().st_size / 1e6:.1f} MB) "
            f"in {time.monotonic() - started:.0f} s"
        )
        return tar


def _localcluster_build() -> ModuleType:
    """e2e/localcluster/build.py, which builds the project's pinned trivy from its Go module."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("e2e.localcluster.build")


def ensure_trivy_layer(epoch: int) -> tuple[Path, str]:
    """/usr/local/bin/trivy, the build of e2e/localcluster/build.py (static, CGO off), as a
    layer tar cached under the binary's digest; and trivy's version."""
    gobuild = _localcluster_build()
    binary = Path(gobuild.ensure_built(["trivy"])["trivy"])
    version = str(gobuild.TRIVY_VERSION)
    key = _key({"recipe": OPERATOR_RECIPE, "sha256": _sha256(binary), "epoch": epoch})
    tar = cache_dir() / f"trivy-{version}-{key}.tar"
    with locked(tar.with_suffix(".lock"), log):
        if not tar.is_file():
            write_layer(tar, [TarEntry("usr/local/bin/trivy", binary, 0o755)], epoch)
    log(f"trivy layer: {version} ({tar.stat().st_size / 1e6:.1f} MB)")
    return tar, version


def console_scripts(entry_points: str) -> dict[str, bytes]:
    """The launchers of a wheel's [console_scripts] for the image's /usr/bin/python3, as pip
    writes them: `name = module:function` -> a script that exits with the function's result."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(entry_points)
    scripts = {}
    if not parser.has_section("console_scripts"):
        return {}
    for name, target in parser.items("console_scripts"):
        module, _, function = target.strip().partition(":")
        if not module or not function or not function.isidentifier():
            raise BuildError(f"console script {name} = {target}: not module:function")
        scripts[name] = (
            "#!/usr/bin/python3\n"
            "import sys\n"
            f"from {module} import {function}\n"
            "\n"
            'if __name__ == "__main__":\n'
            f"    sys.exit({function}())\n"
        ).encode()
    return scripts


def operator_sources() -> list[Path]:
    """What the operator's wheel is built from (setuptools' inputs), without bytecode caches."""
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    files += sorted(
        path
        for path in (REPO / "operator").rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and not any(part.endswith(".egg-info") for part in path.parts)
    )
    return files


def ensure_operator_layer(epoch: int) -> Path:
    """The wayang_operator package as `pip wheel --no-deps` builds it from this tree (in a copy,
    so no build/ folder is left in, or picked up from, the work tree), unpacked and compiled; its
    console scripts in /usr/local/bin; the trivy cache folder, owned by the image's user (for a
    run without a volume there). Cached under the digest of the sources: a small layer, the only
    one that changes when the operator's code does."""
    sources = operator_sources()
    key = _key(
        {
            "recipe": OPERATOR_RECIPE,
            "epoch": epoch,
            "bytecode": _bytecode(),
            "files": {
                path.relative_to(REPO).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sources
            },
        }
    )
    tar = cache_dir() / f"operator-code-{key}.tar"
    with locked(tar.with_suffix(".lock"), log):
        if tar.is_file():
            log(f"operator layer: cached {tar}")
            return tar
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=cache_dir()) as folder:
            tree, wheels, site = (Path(folder) / name for name in ("source", "wheels", "site"))
            for path in sources:
                copy = tree / path.relative_to(REPO)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
            _run(
                (
                    sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(wheels), str(tree),
                )
            )  # fmt: skip
            (wheel,) = wheels.glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)  # noqa: S202 - the wheel just built here
            (entry_points,) = site.glob("*.dist-info/entry_points.txt")
            scripts = console_scripts(entry_points.read_text())
            if OPERATOR not in scripts:
                raise BuildError(f"{wheel.name} has no console script {OPERATOR}")
            _compile(site)
            entries = tree_entries(site, SITE_PACKAGES)
            entries += [
                TarEntry(f"usr/local/bin/{name}", script, 0o755) for name, script in scripts.items()
            ]
            entries += [
                TarEntry(SCAN_CACHE.lstrip("/"), None, 0o755, USER),
                TarEntry(f"{SCAN_CACHE.lstrip('/')}/trivy", None, 0o755, USER),
            ]
            write_layer(tar, entries, epoch)
        log(f"operator layer: {wheel.name}, {tar} in {time.monotonic() - started:.1f} s")
        for stale in cache_dir().glob("operator-code-*.tar"):  # one per edit: keep a week's
            if stale != tar and time.time() - stale.stat().st_mtime > 7 * 86400:
                stale.unlink(missing_ok=True)
                stale.with_suffix(".lock").unlink(missing_ok=True)
        return tar


def operator_spec(mirrors: Sequence[str], epoch: int, *, refresh: bool) -> ImageSpec:
    """The operator's image: its root filesystem, trivy, the dependencies and the operator, in
    the order they change (the last only when the operator's code does)."""
    project = pyproject()
    version = str(project["version"])
    rootfs = ensure_rootfs(mirrors, epoch, refresh=refresh, packages=OPERATOR_PACKAGES)
    trivy, trivy_version = ensure_trivy_layer(epoch)
    dependencies = ensure_dependencies_layer(resolve_dependencies(refresh=refresh), epoch)
    code = ensure_operator_layer(epoch)
    return ImageSpec(
        f"localhost/wayang/{OPERATOR}:{version}",
        [rootfs, trivy, dependencies, code],
        entrypoint=OPERATOR_ENTRYPOINT,
        env=OPERATOR_ENV,
        user=f"{USER}:{USER}",
        workdir="/",
        labels={
            "org.opencontainers.image.title": "Wayang plugin operator",
            "org.opencontainers.image.description": str(project.get("description", "")),
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.base.name": f"debian:{SUITE} ({VARIANT}, mmdebstrap)",
            "io.wayang.trivy.version": trivy_version,
        },
    )


def image_names() -> list[str]:
    """The folder names of every image this script builds: what --only chooses from."""
    samples = sorted(path.name for path in SAMPLES.iterdir() if (path / "plugin.json").is_file())
    return ["runtime-python", JVM, *(f"sample-{name}" for name in samples), OPERATOR]


def chosen(only: Sequence[str] | None) -> list[str]:
    """The images --only selects (names or shell patterns: `sample-*`); all without --only."""
    names = image_names()
    if not only:
        return names
    for pattern in only:
        if not fnmatch.filter(names, pattern):
            raise BuildError(f"--only {pattern}: no such image (images: {', '.join(names)})")
    return [name for name in names if any(fnmatch.fnmatchcase(name, p) for p in only)]


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
        "--refresh",
        action="store_true",
        help="rebuild the cached root filesystems (new packages) and resolve the operator's "
        "dependencies again (new wheels)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="IMAGE",
        help="build this image only (repeatable; a name or a pattern: runtime-python, 'sample-*', "
        f"{OPERATOR}); default: all",
    )
    parser.add_argument(
        "--samples",
        action="store_true",
        help="build the echo sample's artifact of every hosted type (wheel, wasm, jar) into "
        "--out instead of images, and print type -> {file, digest}",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        metavar="FOLDER",
        help="with --samples: also write the Plugin manifests echo-<type>.yaml into FOLDER",
    )
    args = parser.parse_args(argv)
    if args.samples:
        try:
            artifacts = sample_artifacts(args.out.resolve())
        except BuildError as error:
            log(f"failed: {error}")
            return 1
        for name, text in example_manifests().items() if args.examples else ():
            args.examples.mkdir(parents=True, exist_ok=True)
            (args.examples / name).write_text(text)
        for kind, info in artifacts.items():
            log(f"{kind}: {info['file']} {info['digest']}")
        sys.stdout.write(json.dumps(artifacts, indent=2) + "\n")
        return 0
    mirrors = args.mirror or (
        [os.environ["WAYANG_DEBIAN_MIRROR"]]
        if os.environ.get("WAYANG_DEBIAN_MIRROR")
        else list(MIRRORS)
    )
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or DEFAULT_EPOCH)
    started = time.monotonic()
    try:
        wanted = chosen(args.only)
        images: list[tuple[str, ImageSpec]] = []
        if set(wanted) - {OPERATOR, JVM}:
            base = runtime_layers(mirrors, epoch, refresh=args.refresh)
            images += [(name, spec) for name, spec in specs(base) if name in wanted]
        if JVM in wanted:
            base = runtime_layers(mirrors, epoch, refresh=args.refresh, packages=JVM_PACKAGES)
            images.append((JVM, jvm_spec(base)))
        if OPERATOR in wanted:
            images.append((OPERATOR, operator_spec(mirrors, epoch, refresh=args.refresh)))
        out: Path = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        result: dict[str, dict[str, Any]] = {}
        for folder, spec in images:
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
