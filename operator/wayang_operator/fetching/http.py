"""Fetch a plugin artifact over HTTP(S), check it against its pinned digest, unpack it.

One module for both sides of the guarantee "the bytes verified, scanned and approved are the
bytes that run": the operator imports it to fetch the artifact it scans, and the runtime host
images carry this very file as `/opt/wayang/fetch.py`, the init container that fetches the
artifact again in the pod and refuses to unpack anything whose digest differs (a file changed
behind the same URL after approval never loads). So it uses the standard library only (blake3
when the module is there: the operator has it, and so has the runtime image's library layer).

Where the file is (docs/artifacts.md):
- `repository` ending in `.whl` (python) or naming a file (`wasm`, `jar`): that URL;
- for `maven`, a Maven repository (Maven Central's when omitted): `coordinate`
  `group:artifact:version` is the file `<repository>/<group as path>/<artifact>/<version>/
  <artifact>-<version>.jar` (only that jar: its dependencies are shaded into it, since every
  byte that runs is pinned by the one digest);
- otherwise, for python, a PEP 503 "simple" index: the project page
  `<repository>/<normalized coordinate>/` is read and the file is the link whose `#sha256=`
  fragment is the pinned digest (the coordinate may say `name==version`; only the name is used,
  the digest chooses the file).

Credentials, when a pull Secret is given, are HTTP Basic from its dockerconfigjson entry for the
repository's host. Every failure is a FetchError with an ErrorPayload type and whether a retry
may help.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html.parser
import json
import os
import re
import stat
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_BYTES = 256 * 1024 * 1024
"""The largest artifact fetched (a wheel or jar with its dependencies is far smaller)."""
TIMEOUT = 60.0
CHUNK = 1 << 16


class FetchError(Exception):
    def __init__(self, kind: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        """An ErrorPayload type: NetworkError, SecurityError or ValidationError."""
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Source:
    """What the descriptor pins: where (`repository`, `coordinate`) and which bytes."""

    type: str
    repository: str
    coordinate: str
    digest: str


Opener = Callable[[urllib.request.Request, float], Any]


def _open(request: urllib.request.Request, timeout: float) -> Any:
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) checked


def hasher(digest: str) -> Any:
    """A fresh hash object for the digest's algorithm (sha256, sha512, blake3)."""
    algorithm = digest.partition(":")[0]
    if algorithm in ("sha256", "sha512"):
        return hashlib.new(algorithm)
    if algorithm == "blake3":
        try:
            import blake3  # noqa: PLC0415 - optional: only blake3-pinned artifacts need it
        except ImportError as error:
            raise FetchError(
                "ValidationError", "blake3 digests need the blake3 module", retryable=False
            ) from error
        return blake3.blake3()
    raise FetchError("ValidationError", f"unknown digest algorithm in {digest!r}", retryable=False)


def entry_credentials(entry: Any) -> tuple[str, str] | None:
    """The username and password of one dockerconfigjson `auths` entry."""
    if not isinstance(entry, dict):
        return None
    if entry.get("username") is not None and entry.get("password") is not None:
        return str(entry["username"]), str(entry["password"])
    try:
        decoded = base64.b64decode(str(entry.get("auth", "")), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def basic_auth(dockerconfig: bytes, url: str) -> tuple[str, str] | None:
    """The username and password a dockerconfigjson holds for the URL's host."""
    try:
        auths = json.loads(dockerconfig).get("auths") or {}
    except (ValueError, AttributeError):
        return None
    host = urlsplit(url).netloc
    for key, entry in auths.items():
        key_host = urlsplit(key).netloc if "://" in key else str(key).split("/", 1)[0]
        if key_host == host:
            return entry_credentials(entry)
    return None


def _request(url: str, auth: tuple[str, str] | None) -> urllib.request.Request:
    if urlsplit(url).scheme not in ("https", "http"):
        raise FetchError("ValidationError", f"{url!r} is not an http(s) URL", retryable=False)
    request = urllib.request.Request(url, headers={"User-Agent": "wayang-fetch/1"})  # noqa: S310
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _get(
    url: str, auth: tuple[str, str] | None, opener: Opener, sink: Callable[[bytes], None]
) -> None:
    try:
        with opener(_request(url, auth), TIMEOUT) as response:
            total = 0
            while chunk := response.read(CHUNK):
                total += len(chunk)
                if total > MAX_BYTES:
                    raise FetchError(
                        "ValidationError",
                        f"{url} is larger than {MAX_BYTES} bytes",
                        retryable=False,
                    )
                sink(chunk)
    except urllib.error.HTTPError as error:
        retryable = error.code >= 500 or error.code == 429
        raise FetchError(
            "NetworkError", f"GET {url}: HTTP {error.code} {error.reason}", retryable=retryable
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError("NetworkError", f"GET {url}: {reason}", retryable=True) from error


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def normalized(name: str) -> str:
    """PEP 503's project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_direct(source: Source) -> bool:
    """The repository is the file itself, not an index or a Maven repository."""
    if source.type == "maven":
        return False
    return source.type != "python" or urlsplit(source.repository).path.endswith(".whl")


MAVEN_COORDINATE = re.compile(r"([A-Za-z0-9_.-]+):([A-Za-z0-9_.-]+):([A-Za-z0-9_.+-]+)")
"""`group:artifact:version`, each part a Maven identifier (no slashes: the parts become a path)."""


def maven_path(coordinate: str) -> str:
    """The path of a Maven coordinate's jar in the Maven repository layout."""
    found = MAVEN_COORDINATE.fullmatch(coordinate)
    if found is None or ".." in found.groups():
        raise FetchError(
            "ValidationError",
            f"implementation.coordinate {coordinate!r} is not 'group:artifact:version' "
            "(e.g. io.wayang.samples:echo:1.0.0)",
            retryable=False,
        )
    group, artifact, version = found.groups()
    return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


def locate(source: Source, auth: tuple[str, str] | None = None, opener: Opener = _open) -> str:
    """The URL of the artifact's file."""
    if not source.repository:
        raise FetchError(
            "ValidationError",
            f"implementation.repository is missing: a {source.type} artifact is fetched from "
            "an http(s) URL (OCI artifacts are not supported yet)",
            retryable=False,
        )
    if is_direct(source):
        return source.repository
    if source.type == "maven":
        return urljoin(source.repository.rstrip("/") + "/", maven_path(source.coordinate))
    project = re.split(r"[=<>!~ ;\[]", source.coordinate, maxsplit=1)[0]
    page = urljoin(source.repository.rstrip("/") + "/", normalized(project) + "/")
    body = bytearray()
    _get(page, auth, opener, body.extend)
    links = _Links()
    links.feed(body.decode(errors="replace"))
    algorithm, _, hexdigest = source.digest.partition(":")
    for href in links.hrefs:
        _, _, fragment = href.partition("#")
        if fragment == f"{algorithm}={hexdigest}":
            return urljoin(page, href.split("#", 1)[0])
    raise FetchError(
        "ValidationError",
        f"the index page {page} lists no file with {algorithm}={hexdigest} (PEP 503 links "
        "carry the file's digest after '#')",
        retryable=True,
    )


def fetch(source: Source, auth: tuple[str, str] | None = None, opener: Opener = _open) -> bytes:
    """The artifact's bytes, after checking them against the pinned digest."""
    url = locate(source, auth, opener)
    digest = hasher(source.digest)
    data = bytearray()

    def sink(chunk: bytes) -> None:
        digest.update(chunk)
        data.extend(chunk)

    _get(url, auth, opener, sink)
    found = f"{source.digest.partition(':')[0]}:{digest.hexdigest()}"
    if found != source.digest:
        raise FetchError(
            "SecurityError",
            f"{url} is {found}, not the pinned {source.digest}: the file changed after it was "
            "approved, or the descriptor pins another one; nothing was unpacked",
            retryable=False,
        )
    return bytes(data)


KEPT_WHOLE = {"jar": "artifact.jar", "maven": "artifact.jar"}
"""Types whose archive is kept as one file, by this name: the JVM loads a jar as a jar, and
trivy identifies a jar (its `pom.properties`) only as a `.jar` file."""


def unpack(data: bytes, folder: Path, kind: str = "python") -> list[str]:
    """Unpack a zip artifact (a wheel) into `folder`, read-only; names that would leave the
    folder, links and devices are refused. A single-file artifact (a wasm module) is kept as
    `artifact`, a jar (type `kind`) as KEPT_WHOLE says. Returns the names written."""
    whole = KEPT_WHOLE.get(kind) or ("artifact" if not zipfile.is_zipfile(BytesIO(data)) else None)
    if whole is not None:
        target = folder / whole
        target.write_bytes(data)
        target.chmod(0o444)
        return [whole]
    written: list[str] = []
    with zipfile.ZipFile(BytesIO(data)) as archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename)
            mode = info.external_attr >> 16
            if name.is_absolute() or ".." in name.parts or stat.S_ISLNK(mode):
                raise FetchError(
                    "SecurityError",
                    f"the archive holds {info.filename!r}, which would land outside its folder",
                    retryable=False,
                )
            target = folder.joinpath(*name.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod(0o444)
            written.append(info.filename)
    return written


def main() -> int:
    """The pod's init container: fetch, check, unpack into WAYANG_ARTIFACT_DIR; any refusal
    is one line on stderr and in the termination message, and exit code 1."""
    deps = Path(__file__).resolve().parent / "deps"  # the runtime image's library layer
    if deps.is_dir():
        sys.path.append(str(deps))
    env = os.environ
    source = Source(
        env.get("WAYANG_ARTIFACT_TYPE", "python"),
        env["WAYANG_ARTIFACT_REPOSITORY"],
        env["WAYANG_ARTIFACT_COORDINATE"],
        env["WAYANG_ARTIFACT_DIGEST"],
    )
    folder = Path(env.get("WAYANG_ARTIFACT_DIR", "/opt/wayang/plugin"))
    config = env.get("WAYANG_PULL_CONFIG")
    auth = None
    if config and Path(config).is_file():
        auth = basic_auth(Path(config).read_bytes(), source.repository)
    try:
        names = unpack(fetch(source, auth), folder, source.type)
    except FetchError as error:
        line = f"{error.kind}: {error.message}"
        refused = {"event": "fetch refused", "error": error.kind, "message": line}
        sys.stderr.write(json.dumps(refused) + "\n")
        with contextlib.suppress(OSError):
            Path("/dev/termination-log").write_text(line[:4000])
        return 1
    fetched = {"event": "fetched", "digest": source.digest, "files": len(names)}
    sys.stdout.write(json.dumps(fetched) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
