"""Signatures bind id, version and (v2) the whole approved surface; forged or replayed ones fail;
a policy can refuse v1 signatures, which cover the artifact alone."""

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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sandboxLevel", "trusted"),
        ("capabilities", ["network"]),
        ("requiredSecrets", ["db/admin"]),
        ("resourceProfile", {"memory": "8Gi"}),
        ("provides", ["payments.charge"]),
        ("implementation.entrypoint", "evil:run"),
    ],
)
def test_a_v2_signature_covers_every_power(field: str, value: object) -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    original = signed(spec(), key)
    edited = spec(**{field: value}).model_copy(update={"signature": original.signature})
    keys = [trusted(key, KeyAlgorithm.ED25519)]
    assert signing.verify(original, keys).payload_version == 2
    assert not signing.verify(edited, keys).verified


def test_a_policy_can_require_the_surface_to_be_signed() -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    keys = [trusted(key, KeyAlgorithm.ED25519)]
    old = spec().model_copy(update={"signature": signing.sign_v1(spec(), key, "release")})
    accepted = signing.verify(old, keys)
    assert (accepted.verified, accepted.payload_version) == (True, 1)
    refused = signing.verify(old, keys, require_surface=True)
    assert not refused.verified
    assert "v1 signature (artifact only)" in refused.reason
    assert signing.verify(signed(spec(), key), keys, require_surface=True).verified


def test_a_verdict_names_the_key_its_fingerprint_and_owner() -> None:
    key = signing.generate(KeyAlgorithm.ED25519)
    entry = trusted(key, KeyAlgorithm.ED25519).model_copy(update={"owner": "release-team"})
    verdict = signing.verify(signed(spec(), key), [entry])
    assert verdict.fingerprint == signing.fingerprint(key.public_key())
    assert verdict.fingerprint.startswith("sha256:")
    assert verdict.owner == "release-team"
    unnamed = signing.verify(signed(spec(), key), [trusted(key, KeyAlgorithm.ED25519)])
    assert unnamed.owner == "key:release"
