"""trivy as a subprocess: one command line for registry images and local archives alike.

The only difference between scanning `registry/repo@sha256:…` and an air-gapped archive is the
last argument (`REF` or `--input DIR`), so both take the same path through this module. A local
archive must hold exactly the digest the plugin pins (checked before trivy runs); an OCI layout
tar is unpacked first, since trivy reads OCI layouts only as directories.

Every failure (timeout, unreadable archive, trivy's own errors, output that is not JSON) is a
ScanError carrying an ErrorPayload type and whether retrying may help, never an exception the
caller has to guess about. The process runs in its own group and is killed whole on timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.errors import ErrorType
from ..images.oci import ImageError, manifest_digest

STDERR_TAIL = 1500


@dataclass(frozen=True)
class TrivyOptions:
    binary: str = "trivy"
    cache_dir: Path = Path.home() / ".cache" / "wayang" / "trivy"
    db_repository: str | None = None
    """A mirror of trivy's database (an OCI repository), for clusters that cannot reach ghcr.io."""
    offline: bool = False
    """Never download: use the database already in `cache_dir` (air-gapped clusters, tests)."""
    timeout: float = 300.0
    ca_file: Path | None = None
    """CA certificates trusted for registries besides the system's (a private registry)."""


IMAGE = "image"
ROOTFS = "rootfs"


@dataclass(frozen=True)
class Target:
    """What to scan: `reference` is `repo@digest` for a registry, a path for a local archive
    or (input `rootfs`) the folder of a fetched, checked and unpacked artifact."""

    reference: str
    digest: str
    local: bool = False
    input: str = IMAGE
    """trivy's command: `image`, or `rootfs` (installed packages are found in a folder, as
    they are in an image: a wheel's METADATA, which `trivy fs` does not read)."""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Database:
    """trivy's vulnerability database as `metadata.json` describes it."""

    version: int
    updated_at: str
    next_update: str


class ScanError(Exception):
    def __init__(self, kind: ErrorType, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable


def database(cache_dir: Path) -> Database | None:
    """The database in `cache_dir`, or None when there is none (yet)."""
    try:
        meta = json.loads((cache_dir / "db" / "metadata.json").read_text())
        return Database(int(meta["Version"]), str(meta["UpdatedAt"]), str(meta["NextUpdate"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def command(options: TrivyOptions, target: Target, source: str) -> list[str]:
    args = [
        options.binary,
        target.input,
        "--quiet",
        "--format=json",
        "--scanners=vuln,secret,license",
        f"--cache-dir={options.cache_dir}",
        f"--timeout={max(1, round(options.timeout))}s",
    ]
    if options.offline:
        args += ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]
    elif options.db_repository:
        args.append(f"--db-repository={options.db_repository}")
    return [*args, "--input", source] if target.local else [*args, source]


@contextlib.contextmanager
def _local_source(target: Target) -> Iterator[str]:
    """The directory trivy reads, after checking that the archive is the pinned digest."""
    path = Path(target.reference)
    try:
        found = manifest_digest(path)
    except ImageError as error:
        raise ScanError(ErrorType.VALIDATION_ERROR, str(error), retryable=False) from error
    if found != target.digest:
        raise ScanError(
            ErrorType.SECURITY_ERROR,
            f"{path} holds image {found}, not the pinned {target.digest}",
            retryable=False,
        )
    if path.is_dir():
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="wayang-scan-") as folder:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(folder, filter="data")
        except (OSError, tarfile.TarError) as error:
            raise ScanError(
                ErrorType.VALIDATION_ERROR, f"{path}: cannot unpack ({error})", retryable=False
            ) from error
        yield folder


@contextlib.contextmanager
def _environment(options: TrivyOptions, target: Target) -> Iterator[dict[str, str]]:
    """trivy's environment: the pull credentials, and the extra CA certificates as a folder on
    `SSL_CERT_DIR` (Go adds what it finds there to the system bundle; `SSL_CERT_FILE` would
    replace it) holding a copy of them only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIVY_")}
    if target.username is not None and target.password is not None:
        env["TRIVY_USERNAME"], env["TRIVY_PASSWORD"] = target.username, target.password
    if options.ca_file is None or target.input != IMAGE or target.local:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="wayang-ca-") as folder:
        shutil.copyfile(options.ca_file, Path(folder) / "ca.pem")
        env["SSL_CERT_DIR"] = f"{folder}:{os.environ.get('SSL_CERT_DIR') or '/etc/ssl/certs'}"
        yield env


async def _run(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return process.returncode or 0, out, err


async def scan(options: TrivyOptions, target: Target) -> dict[str, Any]:
    """trivy's JSON report for `target`; ScanError for anything else."""
    with (
        _local_source(target)
        if target.local
        else contextlib.nullcontext(target.reference) as source,
        _environment(options, target) as env,
    ):
        try:
            code, out, err = await _run(command(options, target, source), env, options.timeout)
        except TimeoutError as error:
            raise ScanError(
                ErrorType.TIMEOUT,
                f"trivy did not finish within {options.timeout:g}s",
                retryable=True,
            ) from error
        except OSError as error:
            raise ScanError(
                ErrorType.TOOL_ERROR, f"cannot run {options.binary}: {error}", retryable=False
            ) from error
    tail = err.decode(errors="replace").strip()[-STDERR_TAIL:]
    if code != 0:
        raise ScanError(ErrorType.TOOL_ERROR, f"trivy exited with {code}: {tail}", retryable=True)
    try:
        output = json.loads(out)
    except ValueError as error:
        raise ScanError(
            ErrorType.TOOL_ERROR, f"trivy printed no JSON report: {tail}", retryable=True
        ) from error
    if not isinstance(output, dict):
        raise ScanError(ErrorType.TOOL_ERROR, "trivy's report is not an object", retryable=True)
    return output


async def version(options: TrivyOptions) -> str:
    """trivy's own version (`Version: 0.67.2`), for the report's scanner field."""
    try:
        code, out, _ = await _run([options.binary, "--version"], dict(os.environ), 30)
    except (OSError, TimeoutError):
        return "unknown"
    for line in out.decode(errors="replace").splitlines():
        if code == 0 and line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"
