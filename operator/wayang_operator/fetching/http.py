"""Fetch a plugin artifact over HTTP(S), check it against its pinned digest, unpack it.

One module for both sides of the guarantee "the bytes verified, scanned and approved are the
bytes that run": the operator imports it to fetch the artifact it scans, and the runtime host
images carry this very file as `/opt/wayang/fetch.py`, the init container that fetches the
artifact again in the pod and refuses to unpack anything whose digest differs (a file changed
behind the same URL after approval never loads). So it uses the standard library only (blake3
when the module is there: the operator has it, and so has the runtime image's library layer).

Where the file is (docs/artifacts.md):
- `repository` `oci://<registry host[:port]>/<name>[:<tag>]` (every hosted type): the OCI artifact
  `wayang push` made, and the file is its one layer, read as the blob
  `https://<registry>/v2/<name>/blobs/<digest>` by the pinned digest itself (the tag only says
  where it came from); a registry that asks for a token (`WWW-Authenticate: Bearer`) gets one from
  its realm, with the Basic credentials below;
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
repository's host. A private CA (a registry with a certificate of the cluster's own PKI) is
trusted besides the system's when `WAYANG_ARTIFACT_CA` holds its PEM text (the renderer sets it
from the operator's `WAYANG_ARTIFACT_CA_FILE`). Every failure is a FetchError with an
ErrorPayload type and whether a retry may help.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html.parser
import json
import os
import re
import ssl
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
from urllib.parse import urlencode, urljoin, urlsplit

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


def trusting(ca: str | None) -> Opener:
    """An opener that trusts the CA certificates in `ca` (PEM text) besides the system's: a
    registry or repository whose certificate a private CA issued (the local cluster's PKI).
    Without any, the plain one."""
    if not ca:
        return _open
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cadata=ca)
    except (ssl.SSLError, ValueError) as error:
        raise FetchError(
            "ValidationError",
            f"the artifact CA bundle is not PEM certificates ({error})",
            retryable=False,
        ) from error

    def open_(request: urllib.request.Request, timeout: float) -> Any:
        return urllib.request.urlopen(request, timeout=timeout, context=context)  # noqa: S310

    return open_


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


def _drain(url: str, response: Any, sink: Callable[[bytes], None]) -> None:
    """Read the body into `sink`, refusing one past MAX_BYTES."""
    total = 0
    while chunk := response.read(CHUNK):
        total += len(chunk)
        if total > MAX_BYTES:
            raise FetchError(
                "ValidationError", f"{url} is larger than {MAX_BYTES} bytes", retryable=False
            )
        sink(chunk)


def _get(
    url: str, auth: tuple[str, str] | None, opener: Opener, sink: Callable[[bytes], None]
) -> None:
    try:
        with opener(_request(url, auth), TIMEOUT) as response:
            _drain(url, response, sink)
    except urllib.error.HTTPError as error:
        retryable = error.code >= 500 or error.code == 429
        raise FetchError(
            "NetworkError", f"GET {url}: HTTP {error.code} {error.reason}", retryable=retryable
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError("NetworkError", f"GET {url}: {reason}", retryable=True) from error


OCI = "oci://"
OCI_NAME = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
"""A repository name, as the OCI distribution spec allows it."""
OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
OCI_DIGESTS = ("sha256", "sha512")
"""The algorithms a registry addresses blobs by (a blake3 pin cannot name a blob)."""


@dataclass(frozen=True)
class OciReference:
    """`oci://<registry>/<name>[:<tag>]`: where an artifact is in a registry."""

    registry: str
    """host[:port], reached over HTTPS."""
    name: str
    tag: str

    def url(self, kind: str, reference: str) -> str:
        """`kind` (blobs, manifests) of the repository, by digest or tag."""
        return f"https://{self.registry}/v2/{self.name}/{kind}/{reference}"

    def __str__(self) -> str:
        return f"{OCI}{self.registry}/{self.name}:{self.tag}"


def oci_reference(text: str, what: str = "implementation.repository") -> OciReference:
    """Parse `oci://host[:port]/name[:tag]` (the scheme optional, the tag `latest` when
    omitted); `what` names the field or argument in the error."""
    rest = text.removeprefix(OCI)
    host, slash, path = rest.partition("/")
    name, colon, tag = path.rpartition(":") if ":" in path else (path, "", "latest")
    problem = ""
    if "@" in rest:
        problem = "carries a digest: the digest goes in implementation.digest (the file's)"
    elif not host or urlsplit(f"//{host}").hostname is None:
        problem = "names no registry host"
    elif not slash:
        problem = "names no repository in the registry"
    elif not OCI_NAME.fullmatch(name):
        problem = f"has no valid repository name ({name!r}: lowercase, digits, . _ - and /)"
    elif colon and not OCI_TAG.fullmatch(tag):
        problem = f"has an invalid tag {tag!r}"
    if problem:
        raise FetchError(
            "ValidationError",
            f"{what} {text!r} {problem}; the form is oci://<registry host[:port]>/<name>[:<tag>]",
            retryable=False,
        )
    return OciReference(host, name, tag)


def challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme (lowercase) and parameters of a `WWW-Authenticate` challenge, e.g.
    `Bearer realm="https://auth.example/token",service="registry",scope="repository:x:pull"`."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        key.lower(): bare or re.sub(r"\\(.)", r"\1", quoted)
        for key, quoted, bare in re.findall(
            r'([A-Za-z_][\w-]*)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))', rest
        )
    }
    return scheme.lower(), params


class Registry:
    """Requests to one repository of a registry, with the distribution spec's authentication:
    anonymous first; on 401, Basic credentials when the challenge is Basic, or a token fetched
    from the challenge's realm (with those credentials, if any) when it is Bearer, then the
    request once more. Credentials never follow a redirect (a blob may be served from storage
    elsewhere)."""

    def __init__(
        self,
        reference: OciReference,
        auth: tuple[str, str] | None = None,
        opener: Opener = _open,
        actions: str = "pull",
    ) -> None:
        self.reference = reference
        self.auth = auth
        self.opener = opener
        self.actions = actions
        self.authorization: str | None = None

    def _basic(self) -> str | None:
        if self.auth is None:
            return None
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    def _authorize(self, header: str, method: str, url: str) -> None:
        scheme, params = challenge(header)
        if scheme == "basic" and self.auth is not None:
            self.authorization = self._basic()
            return
        if scheme != "bearer" or not params.get("realm"):
            needs = (
                "credentials (a dockerconfigjson entry for the host)"
                if scheme == "basic"
                else (f"an authentication scheme wayang does not speak ({header[:100]!r})")
            )
            raise FetchError(
                "NetworkError",
                f"{method} {url}: HTTP 401, the registry wants {needs}",
                retryable=False,
            )
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or (f"repository:{self.reference.name}:{self.actions}")
        realm = params["realm"]
        token_url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        body = bytearray()
        try:
            login = self._basic()
            self._send(
                "GET", token_url, data=None, headers={}, sink=body.extend, authorization=login
            )
        except urllib.error.HTTPError as error:  # refused credentials, or none given
            raise _http_error("GET", token_url, error) from error
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise FetchError(
                "NetworkError",
                f"the token service {realm} answered without a token",
                retryable=False,
            )
        self.authorization = f"Bearer {token}"

    def call(
        self,
        method: str,
        url: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> tuple[int, dict[str, str]]:
        """Send the request (authenticating once when challenged); the body goes to `sink`.
        Returns the status and the response headers; an HTTP error is a FetchError."""
        for attempt in (1, 2):
            try:
                return self._send(
                    method,
                    url,
                    data=data,
                    headers=headers or {},
                    sink=sink,
                    authorization=self.authorization,
                )
            except urllib.error.HTTPError as error:
                challenged = error.headers.get("WWW-Authenticate")
                if error.code != 401 or attempt == 2 or not challenged:
                    raise _http_error(method, url, error) from error
                self._authorize(challenged, method, url)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None,
        headers: dict[str, str],
        sink: Callable[[bytes], None] | None,
        authorization: str | None,
    ) -> tuple[int, dict[str, str]]:
        request = _request(url, None)
        request.method = method
        request.data = data
        for key, value in headers.items():
            request.add_header(key, value)
        if authorization:
            request.add_unredirected_header("Authorization", authorization)
        try:
            with self.opener(request, TIMEOUT) as response:
                _drain(url, response, sink or (lambda _chunk: None))
                return int(response.status), {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise FetchError("NetworkError", f"{method} {url}: {reason}", retryable=True) from error


def _http_error(method: str, url: str, error: urllib.error.HTTPError) -> FetchError:
    """An HTTP error as a FetchError, with the registry's own error code and message when the
    body has them (`{"errors": [{"code": "BLOB_UNKNOWN", "message": ...}]}`)."""
    detail = ""
    with contextlib.suppress(Exception):
        errors = json.loads(error.read(CHUNK)).get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:3])
    retryable = error.code >= 500 or error.code == 429
    message = f"{method} {url}: HTTP {error.code} {error.reason}" + (
        f" ({detail})" if detail else ""
    )
    return FetchError("NetworkError", message, retryable=retryable)


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
    """The repository is the file itself (or an OCI artifact of it), not an index or a Maven
    repository."""
    if source.repository.startswith(OCI):
        return True
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
            "an oci:// artifact or an http(s) URL",
            retryable=False,
        )
    if source.repository.startswith(OCI):
        algorithm = source.digest.partition(":")[0]
        if algorithm not in OCI_DIGESTS:
            raise FetchError(
                "ValidationError",
                f"implementation.digest {source.digest!r}: an oci:// artifact is pinned by the "
                f"{' or '.join(OCI_DIGESTS)} digest of its file (the registry's blob address)",
                retryable=False,
            )
        return oci_reference(source.repository).url("blobs", source.digest)
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

    if source.repository.startswith(OCI):
        reference = oci_reference(source.repository)
        try:
            Registry(reference, auth, opener).call("GET", url, sink=sink)
        except FetchError as error:
            if getattr(error.__cause__, "code", None) != 404:
                raise
            raise FetchError(
                "NetworkError",
                f"{error.message}: the registry {reference.registry} has no file "
                f"{source.digest} in {reference.name} (push it with `wayang push`; the digest "
                "pinned is the file's, not the manifest's)",
                retryable=False,
            ) from error
    else:
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
        data = fetch(source, auth, trusting(env.get("WAYANG_ARTIFACT_CA")))
        names = unpack(data, folder, source.type)
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
