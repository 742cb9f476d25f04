"""Artifact signatures: what is signed, how, and how a signature is checked against trusted keys.

The signed payload binds everything that identifies the artifact: plugin id, version,
implementation type, coordinate and digest, as canonical JSON (sorted keys, no spaces) behind a
domain prefix, so a signature for one plugin can never be replayed for another, for another version,
or for other bytes, and cannot be confused with a signature made for any other purpose.

`spec.signature` is `<key name>:<base64 signature>`; the key name is only a hint (the signature is
checked against that trusted key first, then against the others), so rotating key names does not
invalidate old signatures.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ..api.descriptor import PluginDescriptor
from ..api.resources import KeyAlgorithm, TrustedKey

DOMAIN = b"wayang.io/plugin-signature/v1\n"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def payload(spec: PluginDescriptor) -> bytes:
    """The exact bytes a publisher signs for this plugin artifact."""
    fields = {
        "coordinate": spec.implementation.coordinate,
        "digest": spec.implementation.digest,
        "id": spec.id,
        "type": spec.implementation.type.value,
        "version": spec.version,
    }
    return DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def generate(algorithm: KeyAlgorithm) -> PrivateKey:
    if algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError("only Ed25519 and ECDSA P-256 private keys are supported")


def sign(spec: PluginDescriptor, key: PrivateKey, key_name: str) -> str:
    """The value for `spec.signature`."""
    data = payload(spec)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(data)
    else:
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return f"{key_name}:{base64.b64encode(raw).decode()}"


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking one signature: which key verified it, or why none did."""

    key: str | None
    reason: str

    @property
    def verified(self) -> bool:
        return self.key is not None


def _public(trusted: TrustedKey) -> PublicKey | None:
    try:
        key = serialization.load_pem_public_key(trusted.public_key.encode())
    except ValueError:
        return None
    if trusted.algorithm is KeyAlgorithm.ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if (
        trusted.algorithm is KeyAlgorithm.ECDSA_P256
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    return None


def _checks(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify(spec: PluginDescriptor, keys: list[TrustedKey]) -> Verdict:
    """Check `spec.signature` against the trusted keys (the named key first)."""
    if not spec.signature:
        return Verdict(None, "the plugin carries no signature (spec.signature)")
    hint, separator, encoded = spec.signature.rpartition(":")
    if not separator:
        hint, encoded = "", spec.signature
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return Verdict(None, "spec.signature is not '<key name>:<base64>'")
    if not keys:
        return Verdict(None, "the policy lists no trusted keys, so no signature can be verified")
    data = payload(spec)
    unusable = []
    for trusted in sorted(keys, key=lambda k: k.name != hint):
        public = _public(trusted)
        if public is None:
            unusable.append(trusted.name)
        elif _checks(public, raw, data):
            return Verdict(trusted.name, f"signed by trusted key {trusted.name!r}")
    note = f" (unusable keys: {', '.join(unusable)})" if unusable else ""
    names = ", ".join(k.name for k in keys)
    return Verdict(
        None,
        f"signature does not verify with any trusted key ({names}) for this id, version, "
        f"type, coordinate and digest{note}",
    )
