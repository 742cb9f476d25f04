"""Python plugins as wheels, fetched over real HTTP, checked by digest, scanned by real trivy.

The wheels are the build's own (runtime-images/build.py `wheel`: byte-for-byte repeatable),
served by an HTTP server of the test's (a direct URL, a PEP 503 index, Basic auth). The
operator's scanner fetches, checks and unpacks them and runs the pinned trivy with the test
database: a wheel that bundles the vulnerable `requests` is blocked, the clean one passes. The
pod's fetcher (the same module, run as the runtime image runs it) refuses bytes that changed
behind the same URL and unpacks nothing.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e import scanfixtures

from tests.runtime_build import BUILD
from wayang_operator.api.errors import ErrorType
from wayang_operator.api.resources import PluginPolicySpec, ScanReportSpec, ScanReportStatus
from wayang_operator.controller import scans
from wayang_operator.core.attestation import Attestor
from wayang_operator.core.policy import DEFAULT_POLICY_NAME, NamedPolicy
from wayang_operator.core.scanpolicy import decide
from wayang_operator.fetching import http as fetching
from wayang_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "runtime-images" / "python" / "samples" / "echo"
FETCHER = ROOT / "operator" / "wayang_operator" / "fetching" / "http.py"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Files:
    """What the server serves (path -> bytes), and the credentials it asks for, if any."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.login: tuple[str, str] | None = None


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Files]]:
    served = Files()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if served.login is not None:
                token = base64.b64encode(":".join(served.login).encode()).decode()
                if self.headers.get("Authorization") != f"Basic {token}":
                    self.send_response(401)
                    self.end_headers()
                    return
            body = served.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()


@pytest.fixture(autouse=True)
def _reset(server: tuple[str, Files]) -> None:
    server[1].files.clear()
    server[1].login = None


def test_wheels_are_the_same_bytes_on_every_build() -> None:
    name, first = BUILD.wheel(ECHO)
    assert name == "wayang_samples_echo-1.0.0-py3-none-any.whl"
    assert BUILD.wheel(ECHO)[1] == first
    assert BUILD.wheel(ECHO, bundles=[("requests", "2.19.0")])[1] != first


def test_a_direct_url_is_fetched_and_checked(server: tuple[str, Files]) -> None:
    base, served = server
    name, data = BUILD.wheel(ECHO)
    served.files[f"/wheels/{name}"] = data
    source = fetching.Source("python", f"{base}/wheels/{name}", "wayang-samples-echo", sha256(data))
    assert fetching.fetch(source) == data

    served.files[f"/wheels/{name}"] = data + b"tampered"
    with pytest.raises(fetching.FetchError) as refused:
        fetching.fetch(source)
    assert refused.value.kind == "SecurityError"
    assert not refused.value.retryable
    assert f"not the pinned {sha256(data)}" in refused.value.message


def test_a_pep503_index_gives_the_file_with_the_pinned_digest(server: tuple[str, Files]) -> None:
    base, served = server
    name, data = BUILD.wheel(ECHO)
    other = BUILD.wheel(ECHO, bundles=[("requests", "2.19.0")])[1]
    hexdigest = sha256(data).split(":")[1]
    served.files["/simple/wayang-samples-echo/"] = (
        f'<a href="../../files/old.whl#sha256={sha256(other)[7:]}">old</a>'
        f'<a href="../../files/{name}#sha256={hexdigest}">{name}</a>'
    ).encode()
    served.files[f"/files/{name}"] = data
    served.files["/files/old.whl"] = other
    source = fetching.Source(
        "python", f"{base}/simple/", "Wayang_Samples.Echo==1.0.0", sha256(data)
    )
    assert fetching.locate(source) == f"{base}/files/{name}"
    assert fetching.fetch(source) == data

    missing = fetching.Source(
        "python", f"{base}/simple/", "wayang-samples-echo", "sha256:" + "0" * 64
    )
    with pytest.raises(fetching.FetchError, match="lists no file with sha256=0000"):
        fetching.fetch(missing)


def test_credentials_come_from_a_dockerconfigjson(server: tuple[str, Files]) -> None:
    base, served = server
    name, data = BUILD.wheel(ECHO)
    served.files[f"/{name}"] = data
    served.login = ("puller", "s3cret")
    source = fetching.Source("python", f"{base}/{name}", "x", sha256(data))
    with pytest.raises(fetching.FetchError) as refused:
        fetching.fetch(source)
    assert refused.value.kind == "NetworkError"
    assert "HTTP 401" in refused.value.message
    host = base.split("://")[1]
    config = json.dumps({"auths": {host: {"username": "puller", "password": "s3cret"}}}).encode()
    assert fetching.fetch(source, fetching.basic_auth(config, source.repository)) == data


def test_an_archive_that_would_leave_its_folder_is_refused(tmp_path: Path) -> None:
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../outside.py", b"print('escaped')")
    with pytest.raises(fetching.FetchError, match="outside its folder"):
        fetching.unpack(buffer.getvalue(), tmp_path)
    assert not (tmp_path.parent / "outside.py").exists()


def _pod_fetch(folder: Path, repository: str, digest: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WAYANG_ARTIFACT_TYPE": "python",
        "WAYANG_ARTIFACT_REPOSITORY": repository,
        "WAYANG_ARTIFACT_COORDINATE": "wayang-samples-echo",
        "WAYANG_ARTIFACT_DIGEST": digest,
        "WAYANG_ARTIFACT_DIR": str(folder),
    }
    command = [sys.executable, "-I", str(FETCHER)]  # as the runtime image runs it: no package
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_pods_fetcher_unpacks_only_the_pinned_bytes(
    server: tuple[str, Files], tmp_path: Path
) -> None:
    base, served = server
    name, data = BUILD.wheel(ECHO)
    served.files[f"/{name}"] = data
    good = tmp_path / "good"
    good.mkdir()
    done = _pod_fetch(good, f"{base}/{name}", sha256(data))
    assert done.returncode == 0, done.stderr
    assert (good / "echo_plugin.py").read_bytes() == (ECHO / "echo_plugin.py").read_bytes()
    assert not os.access(good / "echo_plugin.py", os.W_OK) or os.geteuid() == 0

    served.files[f"/{name}"] = BUILD.wheel(ECHO, bundles=[("requests", "2.19.0")])[1]
    bad = tmp_path / "bad"
    bad.mkdir()
    refused = _pod_fetch(bad, f"{base}/{name}", sha256(data))
    assert refused.returncode == 1
    line = json.loads(refused.stderr.strip().splitlines()[-1])
    assert line["error"] == "SecurityError"
    assert f"not the pinned {sha256(data)}" in line["message"]
    assert list(bad.iterdir()) == []


class RecordingApi:
    """Stands in for KubeApi: a pull Secret to read, and the status the scanner writes."""

    def __init__(self, secret: dict[str, bytes] | None = None) -> None:
        self.secret = secret
        self.status: dict[str, Any] = {}

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secret

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        self.status = status


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> OperatorSettings:
    cache = scanfixtures.vulnerability_db(tmp_path_factory.mktemp("trivy") / "cache")
    return OperatorSettings(
        trivy=str(scanfixtures.trivy()), scan_cache_dir=cache, scan_offline=True, scan_timeout=120
    )


def _scan(
    settings: OperatorSettings,
    repository: str,
    digest: str,
    api: RecordingApi,
    *,
    kind: str = "python",
    coordinate: str = "wayang-samples-echo",
) -> ScanReportStatus:
    spec = ScanReportSpec.model_validate(
        {
            "artifact": {
                "coordinate": coordinate,
                "digest": digest,
                "type": kind,
                "repository": repository,
            },
            "pluginId": "io.wayang.samples/echo",
            "version": "1.0.0",
            "pullSecret": "pull" if api.secret else None,
        }
    )
    scanner = scans.Scanner(settings, api, Attestor.generate())  # type: ignore[arg-type]
    record = scans.ScanRecord(digest.replace(":", "-"), spec, None)
    asyncio.run(scanner.scan("team-a", record, datetime.timedelta(hours=24)))
    return ScanReportStatus.model_validate(api.status)


def _decided(status: ScanReportStatus) -> tuple[bool, str]:
    policy = NamedPolicy(DEFAULT_POLICY_NAME, PluginPolicySpec())
    facts = decide(status, [policy], datetime.datetime.now(datetime.UTC))
    assert facts is not None
    return facts.passed, facts.reason


def test_the_scanner_blocks_a_wheel_that_bundles_a_vulnerable_package(
    server: tuple[str, Files], settings: OperatorSettings
) -> None:
    base, served = server
    name, clean = BUILD.wheel(ECHO)
    vulnerable = BUILD.wheel(ECHO, bundles=[("requests", "2.19.0")])[1]
    served.files[f"/clean/{name}"] = clean
    served.files[f"/vulnerable/{name}"] = vulnerable
    host = base.split("://")[1]
    served.login = ("puller", "s3cret")
    config = json.dumps({"auths": {host: {"username": "puller", "password": "s3cret"}}})
    api = RecordingApi({".dockerconfigjson": config.encode()})

    passed = _scan(settings, f"{base}/clean/{name}", sha256(clean), api)
    assert passed.last_error is None
    assert passed.report is not None
    assert _decided(passed)[0], _decided(passed)[1]

    blocked = _scan(settings, f"{base}/vulnerable/{name}", sha256(vulnerable), api)
    assert blocked.report is not None
    found = {(v.package, v.version) for v in blocked.report.vulnerabilities or []}
    assert ("requests", "2.19.0") in found
    ok, reason = _decided(blocked)
    assert not ok
    assert "requests 2.19.0" in reason, reason


def test_a_scan_of_changed_bytes_is_a_security_error_not_a_report(
    server: tuple[str, Files], settings: OperatorSettings
) -> None:
    base, served = server
    name, data = BUILD.wheel(ECHO)
    served.files[f"/{name}"] = data + b"!"
    status = _scan(settings, f"{base}/{name}", sha256(data), RecordingApi())
    assert status.report is None
    assert status.last_error is not None
    assert status.last_error.type == ErrorType.SECURITY_ERROR
    assert status.last_error.retryable is False
    assert "not the pinned" in status.last_error.message

    served.files.clear()
    missing = _scan(settings, f"{base}/{name}", sha256(data), RecordingApi())
    assert missing.last_error is not None
    assert missing.last_error.type == ErrorType.NETWORK_ERROR
    assert missing.last_error.retryable is False  # a 404 stays a 404: rescanned on schedule


def leaky_module() -> bytes:
    """A wasm module whose data segment carries a realistic fake credential."""
    import wasmtime  # noqa: PLC0415

    text = (
        f"AWS_ACCESS_KEY_ID={scanfixtures.FAKE_KEY_ID}\\n"
        f"AWS_SECRET_ACCESS_KEY={scanfixtures.FAKE_SECRET}\\n"
    )
    source = f'(module (memory (export "memory") 1) (data (i32.const 0) "{text}"))'
    return bytes(wasmtime.wat2wasm(source))


def test_a_wasm_module_with_a_credential_in_its_data_is_blocked_and_a_clean_one_passes(
    server: tuple[str, Files], settings: OperatorSettings
) -> None:
    base, served = server
    _, clean = BUILD.wasm_module(ROOT / "runtime-images" / "wasm" / "samples" / "echo")
    served.files["/echo.wasm"] = clean
    served.files["/leaky.wasm"] = leaky_module()
    for name, data in (("echo", clean), ("leaky", served.files["/leaky.wasm"])):
        url = f"{base}/{name}.wasm"
        status = _scan(settings, url, sha256(data), RecordingApi(), kind="wasm", coordinate=name)
        assert status.report is not None, status.last_error
        ok, reason = _decided(status)
        if name == "echo":
            assert ok, reason
        else:
            assert not ok
            assert "secret" in reason.lower(), reason
            assert scanfixtures.FAKE_SECRET not in status.model_dump_json()


# --- jars: a Maven repository, scanned with trivy's Java database --------------------------------

MAVEN_JAR = "/maven2/io/wayang/samples/echo/1.0.0/echo-1.0.0.jar"


def plugin_jar() -> bytes:
    """A plugin jar as a build leaves it: its classes and its own pom.properties."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        jar.writestr(
            "META-INF/maven/io.wayang.samples/echo/pom.properties",
            "groupId=io.wayang.samples\nartifactId=echo\nversion=1.0.0\n",
        )
        jar.writestr("io/wayang/samples/Echo.class", b"\xca\xfe\xba\xbe")
    return out.getvalue()


def test_a_maven_coordinate_is_the_jar_in_the_repository_layout_kept_whole(
    server: tuple[str, Files], tmp_path: Path
) -> None:
    base, served = server
    data = plugin_jar()
    served.files[MAVEN_JAR] = data
    coordinate = "io.wayang.samples:echo:1.0.0"
    source = fetching.Source("maven", f"{base}/maven2", coordinate, sha256(data))
    assert fetching.locate(source) == base + MAVEN_JAR
    assert fetching.fetch(source) == data
    assert fetching.unpack(data, tmp_path, "maven") == ["artifact.jar"]
    assert (tmp_path / "artifact.jar").read_bytes() == data
    for bad in ("echo", "io.wayang:echo", "io.wayang:../echo:1", "a/b:c:1"):
        with pytest.raises(fetching.FetchError, match=r"implementation\.coordinate") as caught:
            fetching.locate(dataclasses.replace(source, coordinate=bad))
        assert caught.value.kind == "ValidationError"


def test_the_scanner_blocks_a_jar_that_shades_a_vulnerable_library(
    server: tuple[str, Files], settings: OperatorSettings
) -> None:
    base, served = server
    clean = plugin_jar()
    vulnerable = scanfixtures.shading(clean, "org.apache.logging.log4j", "log4j-core", "2.14.1")
    served.files["/clean/echo-1.0.0.jar"] = clean
    served.files["/vulnerable/echo-1.0.0.jar"] = vulnerable
    passed = _scan(settings, f"{base}/clean/echo-1.0.0.jar", sha256(clean), RecordingApi(),
                   kind="jar", coordinate="echo")  # fmt: skip
    assert passed.report is not None, passed.last_error
    assert _decided(passed)[0], _decided(passed)[1]
    blocked = _scan(settings, f"{base}/vulnerable/echo-1.0.0.jar", sha256(vulnerable),
                    RecordingApi(), kind="jar", coordinate="echo")  # fmt: skip
    assert blocked.report is not None, blocked.last_error
    found = {(v.cve, v.package, v.version) for v in blocked.report.vulnerabilities or []}
    assert (scanfixtures.JAR_CVE, "org.apache.logging.log4j:log4j-core", "2.14.1") in found
    ok, reason = _decided(blocked)
    assert not ok
    assert scanfixtures.JAR_CVE in reason, reason


def test_an_offline_scanner_without_the_java_database_does_not_call_a_jar_clean(
    server: tuple[str, Files], settings: OperatorSettings, tmp_path: Path
) -> None:
    base, served = server
    data = plugin_jar()
    served.files[MAVEN_JAR] = data
    cache = tmp_path / "cache"
    shutil.copytree(settings.scan_cache_dir / "db", cache / "db")  # no java-db/
    without = settings.model_copy(update={"scan_cache_dir": cache})
    status = _scan(without, f"{base}/maven2", sha256(data), RecordingApi(), kind="maven",
                   coordinate="io.wayang.samples:echo:1.0.0")  # fmt: skip
    assert status.report is None
    assert status.last_error is not None
    assert "Java database" in status.last_error.message
    assert f"{cache}/java-db" in status.last_error.message
