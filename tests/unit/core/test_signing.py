"""Signatures bind id, version, type, coordinate and digest; forged or replayed ones fail."""

from __future__ import annotations

import base64

import pytest
from tests import documents as d
from tests.documents import mutated

from wayang_operator.api.descriptor import PluginDescriptor
from wayang_operator.api.resources import KeyAlgorithm, TrustedKey
from wayang_operator.core import signing


def spec(**changes: object) -> PluginDescriptor:
    document = d.descriptor()
    for path, value in changes.items():
        document = mutated(document, path, value)
    return PluginDescriptor.model_validate(document)


def trusted(key: signing.PrivateKey, algorithm: KeyAlgorithm, name: str = "release") -> TrustedKey:
    return TrustedKey(name=name, algorithm=algorithm, public_key=signing.public_pem(key).decode())


def signed(
    plugin: PluginDescriptor, key: signing.PrivateKey, name: str = "release"
) -> PluginDescriptor:
    return plugin.model_copy(update={"signature": signing.sign(plugin, key, name)})


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_a_signature_verifies_with_its_trusted_key(algorithm: KeyAlgorithm) -> None:
    key = signing.generate(algorithm)
    verdict = signing.verify(signed(spec(), key), [trusted(key, algorithm)])
    assert verdict.verified
    assert verdict.key == "release"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", "1.2.1"),
        ("id", "com.example/other-plugin"),
        ("implementation.digest", "sha256:" + "cd" * 32),
        ("implementation.coordinate", "com.example:evil:1.2.0"),
        ("implementation.type", "jar"),
    ],
)
def test_a_signature_does_not_carry_over_to_another_artifact(field: str, value: str) -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    signature = signing.sign(spec(), key, "release")
    replayed = spec(**{field: value}).model_copy(update={"signature": signature})
    assert not signing.verify(replayed, [trusted(key, KeyAlgorithm.ED25519)]).verified


def test_untrusted_keys_and_forgeries_fail() -> None:
    key, attacker = signing.generate(KeyAlgorithm.ED25519), signing.generate(KeyAlgorithm.ED25519)
    keys = [trusted(key, KeyAlgorithm.ED25519)]
    assert not signing.verify(signed(spec(), attacker, "release"), keys).verified
    flipped = bytearray(base64.b64decode(signing.sign(spec(), key, "r").split(":")[1]))
    flipped[0] ^= 1
    forged = spec().model_copy(
        update={"signature": "release:" + base64.b64encode(bytes(flipped)).decode()}
    )
    assert not signing.verify(forged, keys).verified
    assert (
        "not '<key name>:<base64>'"
        in signing.verify(spec().model_copy(update={"signature": "x:%%%"}), keys).reason
    )
    assert "no signature" in signing.verify(spec(), keys).reason
    assert "no trusted keys" in signing.verify(signed(spec(), key), []).reason


def test_key_name_is_a_hint_and_algorithm_must_match() -> None:
    key = signing.generate(KeyAlgorithm.ECDSA_P256)
    keys = [
        trusted(signing.generate(KeyAlgorithm.ED25519), KeyAlgorithm.ED25519, "other"),
        trusted(key, KeyAlgorithm.ECDSA_P256, "renamed"),
    ]
    assert signing.verify(signed(spec(), key, "old-name"), keys).key == "renamed"
    mislabelled = [trusted(key, KeyAlgorithm.ED25519, "renamed")]
    verdict = signing.verify(signed(spec(), key, "renamed"), mislabelled)
    assert not verdict.verified
    assert "unusable keys: renamed" in verdict.reason


def test_private_keys_round_trip_through_pem() -> None:
    for algorithm in KeyAlgorithm:
        key = signing.generate(algorithm)
        again = signing.load_private(signing.private_pem(key))
        assert signing.public_pem(again) == signing.public_pem(key)
