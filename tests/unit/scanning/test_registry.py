"""Image references and pull-secret credentials."""

from __future__ import annotations

import base64
import json

import pytest

from wayang_operator.core.references import pinned_reference
from wayang_operator.scanning.registry import credentials, registry_host

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("coordinate", "pinned"),
    [
        ("ghcr.io/acme/redactor", f"ghcr.io/acme/redactor@{DIGEST}"),
        ("ghcr.io/acme/redactor:1.2", f"ghcr.io/acme/redactor@{DIGEST}"),
        ("localhost:5000/redactor:1.2", f"localhost:5000/redactor@{DIGEST}"),
        ("localhost:5000/redactor", f"localhost:5000/redactor@{DIGEST}"),
    ],
)
def test_the_digest_pins_and_a_tag_is_dropped(coordinate: str, pinned: str) -> None:
    assert pinned_reference(coordinate, DIGEST) == pinned


@pytest.mark.parametrize(
    ("reference", "host"),
    [
        ("ghcr.io/acme/x@sha256:1", "ghcr.io"),
        ("localhost:5000/x", "localhost:5000"),
        ("localhost/x", "localhost"),
        ("acme/x", "docker.io"),
        ("x", "docker.io"),
    ],
)
def test_registry_host(reference: str, host: str) -> None:
    assert registry_host(reference) == host


def config(**auths: dict[str, str]) -> bytes:
    return json.dumps({"auths": auths}).encode()


def test_credentials_by_username_or_auth() -> None:
    plain = config(**{"ghcr.io": {"username": "bot", "password": "s3cret"}})
    assert credentials(plain, "ghcr.io/acme/x") == ("bot", "s3cret")
    encoded = base64.b64encode(b"bot:pa:ss").decode()
    hub = config(**{"https://index.docker.io/v1/": {"auth": encoded}})
    assert credentials(hub, "acme/x") == ("bot", "pa:ss")


def test_no_credentials_for_another_registry_or_garbage() -> None:
    assert (
        credentials(config(**{"quay.io": {"username": "a", "password": "b"}}), "ghcr.io/x/y")
        is None
    )
    assert credentials(b"not json", "ghcr.io/x/y") is None
    assert credentials(config(**{"ghcr.io": {"auth": "%%%"}}), "ghcr.io/x/y") is None
