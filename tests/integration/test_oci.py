"""OCI artifacts against the real registry: CNCF Distribution (built by e2e/localcluster/build.py,
`make tools`), started here on a free port with a serving certificate of a throwaway CA of the
local cluster's PKI module, the way the local cluster starts its own.

`wayang push` uploads a wasm module and a wheel; the fetcher (the operator's, and the pod's as
the runtime image runs it) pulls them back from `oci://` by the file's digest; a tag moved to
other bytes leaves the pinned digest on the original bytes; bytes changed in the registry's own
storage are refused by digest (Distribution checks digests on upload, not on every read); and
ORAS, another client, pulls what `wayang push` pushed by its manifest digest. A second
registry asks for tokens (Distribution's `auth.token`, with a token service of the test's that
signs ES256 JWTs with a certificate of the same CA): push and fetch follow the Bearer challenge
with the pull Secret's Basic credentials, and without them are refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import oras.client
import pytest
import wasmtime
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from e2e.flow import pushed_lines
from e2e.localcluster import build
from e2e.localcluster import cluster as local
from e2e.localcluster.pki import Authority

from tests.integration.test_artifacts import ECHO, FETCHER, sha256
from tests.runtime_build import BUILD
from wayang_operator.cli import main
from wayang_operator.fetching import http


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> local.Layout:
    return local.Layout(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def registry(layout: local.Layout) -> Iterator[local.Registry]:
    binary = build.ensure_built(["registry"])["registry"]
    started, took = local.start_registry(
        layout, binary, Authority(layout.pki), "127.0.0.1", local.free_port()
    )
    print(f"registry ready in {took:.2f}s")  # noqa: T201 - the measurement, with -s
    yield started
    local.down(layout)


def wayang_push(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    """`wayang push` in-process; its `key: value` lines."""
    assert main(["push", *args]) == 0, capsys.readouterr().err
    return pushed_lines(capsys.readouterr().out)


def fetcher(registry: local.Registry) -> http.Opener:
    return http.trusting(registry.ca.read_text())


def module(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(f'(module (memory 1) (data (i32.const 0) "{text}"))'))


def test_pushed_artifacts_are_fetched_back_by_the_files_digest(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wasm = tmp_path / "echo.wasm"
    wasm.write_bytes(module("echo"))
    name, wheel = BUILD.wheel(ECHO)
    (tmp_path / name).write_bytes(wheel)
    for path, kind in ((wasm, "wasm"), (tmp_path / name, "python")):
        reference = f"oci://{registry.address}/plugins/{kind}-echo:1.0.0"
        started = time.monotonic()
        lines = wayang_push(capsys, str(path), reference, "--ca-file", str(registry.ca))
        pushed = time.monotonic() - started
        assert lines["file digest"] == sha256(path.read_bytes())
        source = http.Source(kind, reference, "echo", lines["file digest"])
        started = time.monotonic()
        assert http.fetch(source, None, fetcher(registry)) == path.read_bytes()
        print(f"{kind}: push {pushed:.3f}s, fetch {time.monotonic() - started:.3f}s")  # noqa: T201


def test_pin_prints_the_example_manifest_pinned_to_the_pushed_jar_as_maven_unsigned(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--pin` takes the type from the manifest (a .jar is a jar or a maven artifact), sets the
    repository and digest, drops the signature that covered the old digest and prints the
    manifest; the summary goes to stderr, so the output can go straight to kubectl or a file."""
    manifest = yaml.safe_load(BUILD.example_manifests()["echo-maven.yaml"])
    manifest["spec"]["signature"] = "release-2026:c2ln"
    (tmp_path / "echo-maven.yaml").write_text(yaml.safe_dump(manifest))
    name, jar = BUILD.jar_sample(BUILD.JVM_SAMPLES / "echo")
    (tmp_path / name).write_bytes(jar)
    reference = f"oci://{registry.address}/team-a/echo-maven:1.0.0"
    pin = ["--pin", str(tmp_path / "echo-maven.yaml"), "--ca-file", str(registry.ca)]
    assert main(["push", str(tmp_path / name), reference, *pin]) == 0
    out, err = capsys.readouterr()
    document = yaml.safe_load(out)
    implementation = document["spec"]["implementation"]
    assert implementation["type"] == "maven"
    assert implementation["repository"] == reference
    assert implementation["digest"] == sha256(jar)
    assert implementation["coordinate"] == "io.wayang.samples:echo:1.0.0", "kept"
    assert "signature" not in document["spec"]
    assert "dropped: sign again" in err
    assert f"file digest: {sha256(jar)}" in err
    source = http.Source("maven", reference, "io.wayang.samples:echo:1.0.0", sha256(jar))
    assert http.fetch(source, None, fetcher(registry)) == jar


def test_pin_refuses_a_manifest_of_another_kind_before_pushing(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "echo-container.yaml").write_text(BUILD.example_manifests()["echo-container.yaml"])
    wasm = tmp_path / "echo.wasm"
    wasm.write_bytes(module("never pushed"))
    reference = f"oci://{registry.address}/team-a/never:1.0.0"
    pin = ["--pin", str(tmp_path / "echo-container.yaml"), "--ca-file", str(registry.ca)]
    assert main(["push", str(wasm), reference, *pin]) == 2
    assert "spec.implementation.type is 'container', but an artifact was given" in (
        capsys.readouterr().err
    )
    (tmp_path / "notes.yaml").write_text("kind: ConfigMap\n")
    assert main(["push", str(wasm), reference, "--pin", str(tmp_path / "notes.yaml")]) == 2
    assert "not a Plugin manifest with spec.implementation" in capsys.readouterr().err
    tags = urllib.request.Request(f"https://{registry.address}/v2/team-a/never/tags/list")
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetcher(registry)(tags, 10)
    assert refused.value.code == 404, "nothing was pushed"


def test_a_moved_tag_leaves_the_pinned_digest_on_the_original_bytes(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = f"oci://{registry.address}/plugins/moved:1.0.0"
    first, second = tmp_path / "first.wasm", tmp_path / "second" / "first.wasm"
    second.parent.mkdir()
    first.write_bytes(module("original"))
    second.write_bytes(module("replaced"))
    pinned = wayang_push(capsys, str(first), reference, "--ca-file", str(registry.ca))
    moved = wayang_push(capsys, str(second), reference, "--ca-file", str(registry.ca))
    assert moved["manifest digest"] != pinned["manifest digest"]
    source = http.Source("wasm", reference, "moved", pinned["file digest"])
    assert http.fetch(source, None, fetcher(registry)) == first.read_bytes()


def test_bytes_changed_in_the_registrys_storage_are_refused_by_digest(
    registry: local.Registry,
    layout: local.Layout,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A compromised registry (its storage rewritten behind its back) serves other bytes at the
    pinned digest's address: a SecurityError, not retried, nothing returned."""
    path = tmp_path / "tampered.wasm"
    path.write_bytes(module("approved"))
    reference = f"oci://{registry.address}/plugins/tampered:1.0.0"
    digest = wayang_push(capsys, str(path), reference, "--ca-file", str(registry.ca))["file digest"]
    hexdigest = digest.removeprefix("sha256:")
    (stored,) = layout.registry_data.glob(
        f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    )
    stored.write_bytes(module("evil!!!!"))  # same length: only the digest tells
    source = http.Source("wasm", reference, "tampered", digest)
    with pytest.raises(http.FetchError) as refused:
        http.fetch(source, None, fetcher(registry))
    assert refused.value.kind == "SecurityError"
    assert not refused.value.retryable
    assert f"not the pinned {digest}" in refused.value.message


def test_a_digest_the_registry_does_not_have_is_a_final_network_error(
    registry: local.Registry,
) -> None:
    """Pinning the manifest's digest instead of the file's, or a file never pushed: the
    registry answers 404 (BLOB_UNKNOWN); retrying cannot help, the message says what to pin."""
    source = http.Source("wasm", f"oci://{registry.address}/plugins/none", "x", sha256(b"never"))
    with pytest.raises(http.FetchError) as missing:
        http.fetch(source, None, fetcher(registry))
    assert (missing.value.kind, missing.value.retryable) == ("NetworkError", False)
    assert "HTTP 404" in missing.value.message
    assert "BLOB_UNKNOWN" in missing.value.message
    assert "the digest pinned is the file's, not the manifest's" in missing.value.message


def test_without_the_ca_the_registry_is_not_trusted(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.wasm"
    path.write_bytes(module("x"))
    assert main(["push", str(path), f"{registry.address}/plugins/x"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach registry https://" in err
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert "--ca-file" in err


def test_the_pods_fetcher_pulls_from_oci_with_the_ca_from_its_environment(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, wheel = BUILD.wheel(ECHO)
    (tmp_path / name).write_bytes(wheel)
    reference = f"oci://{registry.address}/plugins/pod-echo:1.0.0"
    wayang_push(capsys, str(tmp_path / name), reference, "--ca-file", str(registry.ca))
    folder = tmp_path / "plugin"
    folder.mkdir()
    env = {
        **os.environ,
        "WAYANG_ARTIFACT_TYPE": "python",
        "WAYANG_ARTIFACT_REPOSITORY": reference,
        "WAYANG_ARTIFACT_COORDINATE": "wayang-samples-echo",
        "WAYANG_ARTIFACT_DIGEST": sha256(wheel),
        "WAYANG_ARTIFACT_DIR": str(folder),
        "WAYANG_ARTIFACT_CA": registry.ca.read_text(),
    }
    command = [sys.executable, "-I", str(FETCHER)]  # as the runtime image runs it: no package
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (folder / "echo_plugin.py").read_bytes() == (ECHO / "echo_plugin.py").read_bytes()
    without = {key: value for key, value in env.items() if key != "WAYANG_ARTIFACT_CA"}
    refused = subprocess.run(
        command, env=without, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in json.loads(refused.stderr)["message"]


def test_oras_pulls_what_wayang_pushed_by_its_manifest_digest(
    registry: local.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "interop.wasm"
    path.write_bytes(module("interop"))
    reference = f"{registry.address}/plugins/interop:1.0.0"
    lines = wayang_push(capsys, str(path), reference, "--ca-file", str(registry.ca))
    client = oras.client.OrasClient(hostname=registry.address, tls_verify=str(registry.ca))
    target = f"{registry.address}/plugins/interop@{lines['manifest digest']}"
    manifest = client.get_manifest(target)
    assert manifest["artifactType"] == "application/vnd.wayang.plugin.wasm.v1"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.wasm.content.layer.v1+wasm"
    (pulled,) = client.pull(target=target, outdir=str(tmp_path / "pulled"))
    assert Path(pulled).name == "interop.wasm", "the layer's org.opencontainers.image.title"
    assert hashlib.sha256(Path(pulled).read_bytes()).hexdigest() == lines["file digest"][7:]


class TokenService:
    """The token half of the distribution spec's Bearer flow, for a registry configured with
    Distribution's `auth.token`: Basic credentials in, an ES256 JWT out whose x5c chain ends at
    the test CA (Distribution's `rootcertbundle`) and whose access is the scope asked for."""

    def __init__(self, authority: Authority) -> None:
        pair = authority.serving("token-signer", ["token-signer"], [])
        key = serialization.load_pem_private_key(pair.key_pem(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key
        cert = x509.load_pem_x509_certificate(pair.cert_pem())
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.login = ("pusher", "s3cret")
        self.scopes: list[str] = []
        self.url = ""

    def token(self, scope: str) -> str:
        _, name, actions = scope.split(":")
        now = int(time.time())
        claims = {
            "iss": "wayang-test", "sub": self.login[0], "aud": "wayang-test",
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
            "access": [{"type": "repository", "name": name, "actions": actions.split(",")}],
        }  # fmt: skip
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        signing = b".".join(_b64url(json.dumps(part).encode()) for part in (header, claims))
        r, s = decode_dss_signature(self.key.sign(signing, ec.ECDSA(hashes.SHA256())))
        return (signing + b"." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[local.Registry, TokenService]]:
    layout = local.Layout(tmp_path_factory.mktemp("token-registry"))
    authority = Authority(layout.pki)
    service = TokenService(authority)
    expected = "Basic " + base64.b64encode(":".join(service.login).encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            scope = query["scope"][0]
            service.scopes.append(scope)
            body = json.dumps({"token": service.token(scope)}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    auth = {
        "token": {
            "realm": f"http://127.0.0.1:{httpd.server_address[1]}/token",
            "service": "wayang-test",
            "issuer": "wayang-test",
            "rootcertbundle": str(authority.pair.cert),
        }
    }
    binary = build.ensure_built(["registry"])["registry"]
    started, _ = local.start_registry(
        layout, binary, authority, "127.0.0.1", local.free_port(), auth
    )
    yield started, service
    local.down(layout)
    httpd.shutdown()


def test_a_registry_that_wants_a_token_gets_one_for_the_pull_secrets_credentials(
    token_registry: tuple[local.Registry, TokenService],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, service = token_registry
    path = tmp_path / "private.wasm"
    path.write_bytes(module("private"))
    reference = f"oci://{registry.address}/plugins/private:1.0.0"
    config = tmp_path / "config.json"
    login = base64.b64encode(":".join(service.login).encode()).decode()
    config.write_text(json.dumps({"auths": {registry.address: {"auth": login}}}))
    ca = ("--ca-file", str(registry.ca))

    assert main(["push", str(path), reference, *ca]) == 1
    refused = capsys.readouterr().err
    assert f"wayang push: registry https://{registry.address} refused the upload: " in refused
    assert "HTTP 401" in refused

    lines = wayang_push(capsys, str(path), reference, *ca, "--registry-config", str(config))
    # the registry's challenge names the actions in no fixed order
    resource, _, actions = service.scopes[-1].rpartition(":")
    assert (resource, set(actions.split(","))) == ("repository:plugins/private", {"pull", "push"})
    source = http.Source("wasm", reference, "private", lines["file digest"])
    credentials = http.basic_auth(config.read_bytes(), reference)
    assert http.fetch(source, credentials, fetcher(registry)) == path.read_bytes()
    assert service.scopes[-1] == "repository:plugins/private:pull"
    with pytest.raises(http.FetchError) as anonymous:
        http.fetch(source, None, fetcher(registry))
    assert (anonymous.value.kind, anonymous.value.retryable) == ("NetworkError", False)
    assert "/token" in anonymous.value.message
    assert "HTTP 401" in anonymous.value.message
