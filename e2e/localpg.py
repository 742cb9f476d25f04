"""A throwaway local PostgreSQL server for tests and benchmarks, from the OS packages.

The audit store needs a real PostgreSQL (roles, grants, transactions), and a container or a shared
server would make the tests depend on things outside the project. So `ensure_installed()` finds
the server binaries (installing the Debian package when we are root), and `start(folder)` runs a
fresh cluster in `folder`: 127.0.0.1 on a free port, unix socket inside `folder`, fsync off,
`trust` authentication for the socket and 127.0.0.1 only.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (or a system
user `wayang-pg` made for it). That user gets `folder` (chown -R), but it must also be able to
traverse every parent directory of `folder`: a folder under /tmp works; pytest's tmp_path does
once its 0700 parents are opened (tests/conftest.py does that).

`python -m e2e.localpg up DIR` prints the DSN and leaves the server running;
`python -m e2e.localpg down DIR` stops it and deletes `DIR/data`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
FALLBACK_USER = "wayang-pg"
STARTUP_TIMEOUT = 30.0
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the terminating NUL


def log(message: str) -> None:
    print(f"[postgres] {message}", file=sys.stderr, flush=True)


def _version_key(path: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/<version>/bin sorted by version, so 16 beats 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_binaries() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates += [Path(entry) for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in BINARIES):
            return directory
    return None


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, check=False)


def ensure_installed() -> Path:
    """The server binaries' directory, installing the Debian package if we may (root)."""
    found = find_binaries()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under "
            "/usr/lib/postgresql/*/bin or on PATH; install the OS package (Debian: "
            "`sudo apt-get install postgresql`) or run `make postgres` as root"
        )
    install = ("install", "-y", "--no-install-recommends", "postgresql")
    log("installing the Debian package postgresql (apt-get install)")
    result = _apt_get(*install)
    if result.returncode != 0:
        log("apt-get install failed; running apt-get update and trying again")
        updated = _apt_get("update")
        if updated.returncode != 0:
            raise RuntimeError(f"apt-get update failed:\n{updated.stdout}{updated.stderr}")
        result = _apt_get(*install)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise RuntimeError(f"apt-get install postgresql failed:\n{output}")
    found = find_binaries()
    if found is None:
        raise RuntimeError("apt-get installed postgresql but initdb/pg_ctl/postgres are missing")
    log(f"installed: {found}")
    return found


def _server_user() -> pwd.struct_passwd | None:
    """Whom the server runs as: None means us; as root, an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    log(f"creating the system user {FALLBACK_USER} to run the server (it refuses root)")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
    )
    return pwd.getpwnam(FALLBACK_USER)


def _as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess keyword arguments that drop root for `user` (no supplementary groups)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _run(
    command: list[str], user: pwd.struct_passwd | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, **_as(user)
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _chown_tree(folder: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(folder):
        for name in (root, *(os.path.join(root, entry) for entry in dirs + files)):
            os.lchown(name, user.pw_uid, user.pw_gid)


def _stop(bin_dir: Path, data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """pg_ctl stop -m immediate, if a server runs there (a throwaway needs no checkpoint)."""
    if not (data_dir / "postmaster.pid").exists():
        return
    command = [str(bin_dir / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "immediate", "-w"]
    result = _run(command, user, data_dir.parent)
    if result.returncode != 0 and (data_dir / "postmaster.pid").exists():
        raise RuntimeError(f"pg_ctl stop failed:\n{result.stdout}{result.stderr}")


@dataclass
class Server:
    """A running throwaway server; `dsn` connects as the superuser `postgres`."""

    dsn: str
    port: int
    data_dir: Path
    socket_dir: Path
    bin_dir: Path
    user: pwd.struct_passwd | None = field(repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    def stop(self) -> None:
        """Stop the server at once; calling it again does nothing."""
        if not self._stopped:
            _stop(self.bin_dir, self.data_dir, self.user)
            self._stopped = True


def _configure(data_dir: Path, port: int, socket_dir: Path) -> None:
    """Settings for speed and isolation; pg_hba allows the socket and 127.0.0.1 only."""
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{socket_dir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "logging_collector": "off",
    }
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\n# e2e/localpg: a throwaway test server\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    (data_dir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")


def _wait(dsn: str, logfile: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections within {STARTUP_TIMEOUT:.0f}s "
                    f"({error}); {logfile}:\n{_log_tail(logfile)}"
                ) from error
        time.sleep(0.1)


def start(folder: Path) -> Server:
    """initdb a fresh cluster in `folder/data` and start it; `folder/data` must not exist yet."""
    bin_dir = ensure_installed()
    folder = folder.resolve()
    data_dir, socket_dir, logfile = folder / "data", folder / "run", folder / "postgres.log"
    if data_dir.exists():
        raise RuntimeError(f"{data_dir} exists; stop and remove it first (or use a fresh folder)")
    if len(str(socket_dir / ".s.PGSQL.65535")) > SOCKET_PATH_MAX:
        raise RuntimeError(f"{socket_dir} is too long for a unix socket path; use a shorter one")
    socket_dir.mkdir(parents=True, exist_ok=True)
    user = _server_user()
    if user is not None:
        if _run(["test", "-x", str(folder.parent)], user, Path("/")).returncode != 0:
            raise RuntimeError(
                f"user {user.pw_name} cannot reach {folder}: it must be able to traverse every "
                f"parent directory (e.g. chmod 755 {folder.parent})"
            )
        _chown_tree(folder, user)
    initdb = [
        str(bin_dir / "initdb"),
        *("-D", str(data_dir), f"--username={SUPERUSER}", "--auth=trust"),
        *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
    ]
    result = _run(initdb, user, folder)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
    port = _free_port()
    _configure(data_dir, port, socket_dir)
    pg_ctl = [str(bin_dir / "pg_ctl"), "start", "-W", "-D", str(data_dir), "-l", str(logfile)]
    result = _run(pg_ctl, user, folder)
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed:\n{result.stdout}{result.stderr}")
    dsn = f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres"
    server = Server(dsn, port, data_dir, socket_dir, bin_dir, user)
    try:
        _wait(dsn, logfile)
    except BaseException:
        server.stop()
        raise
    log(f"started on 127.0.0.1:{port} (data {data_dir}, log {logfile})")
    return server


@contextlib.contextmanager
def running(folder: Path) -> Iterator[Server]:
    """A server for the duration of the block; stopped however the block ends."""
    server = start(folder)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.localpg")
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "up":
        print(start(args.folder).dsn)
        return 0
    data_dir = args.folder.resolve() / "data"
    if data_dir.exists():
        bin_dir = ensure_installed()
        owner = pwd.getpwuid(data_dir.stat().st_uid) if os.geteuid() == 0 else None
        _stop(bin_dir, data_dir, owner)
        shutil.rmtree(data_dir)
        log(f"stopped; removed {data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
