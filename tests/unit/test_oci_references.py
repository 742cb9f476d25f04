"""OCI artifact references, registry challenges and the manifests `wayang push` writes: the pure
parts, each error naming the field or flag it is about (the registry itself: tests/integration/
test_oci.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wayang_operator.cli import main
from wayang_operator.cli.push import artifact_manifest, implementation_lines, plugin_type
from wayang_operator.fetching import http


@pytest.mark.parametrize(
    ("text", "registry", "name", "tag"),
    [
        ("oci://10.0.0.5:5000/wayang/echo:1.0.0", "10.0.0.5:5000", "wayang/echo", "1.0.0"),
        ("oci://registry.example.com/team/a/b", "registry.example.com", "team/a/b", "latest"),
        ("localhost:5000/x__y.z-w:v_1", "localhost:5000", "x__y.z-w", "v_1"),
        ("oci://[::1]:5000/x:1", "[::1]:5000", "x", "1"),
    ],
)
def test_oci_references_name_a_registry_a_repository_and_a_tag(
    text: str, registry: str, name: str, tag: str
) -> None:
    reference = http.oci_reference(text)
    assert (reference.registry, reference.name, reference.tag) == (registry, name, tag)
    assert reference.url("blobs", "sha256:ab") == f"https://{registry}/v2/{name}/blobs/sha256:ab"
    assert http.oci_reference(str(reference)) == reference


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("oci://r/x@sha256:" + "a" * 64, "carries a digest: the digest goes in implementation"),
        ("oci:///x", "names no registry host"),
        ("oci://r", "names no repository in the registry"),
        ("oci://r/Team/x", "has no valid repository name ('Team/x'"),
        ("oci://r/x/", "has no valid repository name ('x/'"),
        ("oci://r/x:", "has an invalid tag ''"),
        ("oci://r/x:-1", "has an invalid tag '-1'"),
    ],
)
def test_a_bad_reference_is_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(http.FetchError) as refused:
        http.oci_reference(text)
    assert refused.value.kind == "ValidationError"
    assert not refused.value.retryable
    assert refused.value.message.startswith(f"implementation.repository {text!r} {problem}")
    assert refused.value.message.endswith("oci://<registry host[:port]>/<name>[:<tag>]")
    with pytest.raises(http.FetchError, match=r"^REF "):
        http.oci_reference(text, "REF")


def test_an_oci_pin_is_the_files_sha256_or_sha512_digest() -> None:
    blake = http.Source("wasm", "oci://r/x", "x", "blake3:" + "ab" * 32)
    with pytest.raises(http.FetchError, match=r"implementation.digest 'blake3:.*sha256 or sha512"):
        http.locate(blake)
    pinned = http.Source("python", "oci://r:5000/x:1.0", "x", "sha256:" + "ab" * 32)
    assert http.is_direct(pinned), "an OCI artifact of a wheel is the wheel, not an index"
    assert http.locate(pinned) == "https://r:5000/v2/x/blobs/sha256:" + "ab" * 32


def test_registry_credentials_are_the_pull_secrets_entry_for_the_registry_host() -> None:
    config = json.dumps({"auths": {"r:5000": {"username": "u", "password": "p"}}}).encode()
    assert http.basic_auth(config, "oci://r:5000/team/x:1") == ("u", "p")
    assert http.basic_auth(config, "oci://r/team/x") is None


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:samalba/my-app:pull,push"',
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:samalba/my-app:pull,push",
            },
        ),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        (
            'bearer realm="https://a/t?x=1", error="insufficient_scope", Service=reg',
            "bearer",
            {"realm": "https://a/t?x=1", "error": "insufficient_scope", "service": "reg"},
        ),
        (r'Bearer realm="a\"b"', "bearer", {"realm": 'a"b'}),
        ("Negotiate", "negotiate", {}),
    ],
)
def test_www_authenticate_challenges_are_parsed(
    header: str, scheme: str, params: dict[str, str]
) -> None:
    assert http.challenge(header) == (scheme, params)


@pytest.mark.parametrize(
    ("file", "kind", "layer"),
    [
        ("echo.wasm", "wasm", "application/vnd.wasm.content.layer.v1+wasm"),
        ("echo-1.0-py3-none-any.whl", "python", "application/octet-stream"),
        ("echo.jar", "jar", "application/octet-stream"),
    ],
)
def test_an_artifact_manifest_is_one_titled_layer_and_the_empty_config(
    file: str, kind: str, layer: str
) -> None:
    assert plugin_type(Path(file), None) == kind
    manifest = artifact_manifest(kind, file, b"bytes")
    assert manifest == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": f"application/vnd.wayang.plugin.{kind}.v1",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        },
        "layers": [
            {
                "mediaType": layer,
                "digest": "sha256:" + hashlib.sha256(b"bytes").hexdigest(),
                "size": 5,
                "annotations": {"org.opencontainers.image.title": file},
            }
        ],
    }
    assert artifact_manifest(kind, file, b"bytes") == manifest, "no timestamps: reproducible"


def test_the_type_comes_from_the_flag_or_the_extension_and_the_error_names_the_flag() -> None:
    assert plugin_type(Path("plugin.bin"), "maven") == "maven"
    with pytest.raises(ValueError, match=r"plugin.bin: the extension .*; give --type"):
        plugin_type(Path("plugin.bin"), None)


def test_the_printed_lines_pin_what_was_pushed() -> None:
    reference = http.oci_reference("oci://r:5000/team/echo:1.0")
    assert implementation_lines("wasm", reference, "sha256:ab") == (
        "implementation:\n  type: wasm\n  repository: oci://r:5000/team/echo:1.0\n"
        "  digest: sha256:ab\n"
    )
    assert implementation_lines("container", reference, "sha256:cd") == (
        "implementation:\n  type: container\n  coordinate: r:5000/team/echo\n  digest: sha256:cd\n"
    )


def test_push_errors_name_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "echo.wasm"
    module.write_bytes(b"\0asm")
    assert main(["push", str(module), "oci://r/Bad"]) == 2
    assert "wayang push: REF 'oci://r/Bad' has no valid repository name" in capsys.readouterr().err
    assert main(["push", str(tmp_path / "x.bin"), "r/x"]) == 2
    assert "give --type" in capsys.readouterr().err
    missing = tmp_path / "none.pem"
    assert main(["push", str(module), "r/x", "--ca-file", str(missing)]) == 2
    assert f"cannot read {missing}" in capsys.readouterr().err
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"other:5000": {"auth": "dTpw"}}}))
    assert main(["push", str(module), "r/x", "--registry-config", str(config)]) == 2
    assert "--registry-config has no credentials for r" in capsys.readouterr().err
    assert main(["push", "--image", str(tmp_path), "r/x"]) == 2
    assert "not an OCI image layout" in capsys.readouterr().err
