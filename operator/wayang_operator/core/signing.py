"""Signatures: what a publisher signs for a plugin, what an approver signs for a decision, and how
either is checked against the keys a policy trusts.

A plugin's payload v2 (what `wayang sign` writes) binds the plugin id, version and its whole
approved surface (core/surface.py: the implementation with its digest, the sandbox level,
capabilities, Secrets, resources, provided and required capabilities, dependencies), as canonical
JSON behind a domain prefix, so a signed plugin cannot be edited into more powers, replayed for
another plugin or version, or confused with a signature made for any other purpose. Payload v1
covers only id, version, type, coordinate and digest; a policy with `signing.requireSurface`
refuses it.

An approver's payload (GitOps, `kubectl wayang approve --sign`) binds the namespace, the Plugin's
name, id, version, digest, the approved surface's digest, the decision and its reason.

A signature is `<key name>:<base64>`; the key name is only a hint (the signature is checked
against that trusted key first, then against the others), so renaming a key does not invalidate
old signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ..api.descriptor import PluginDescriptor
from ..api.resources import KeyAlgorithm, TrustedKey
from . import surface

DOMAIN = b"wayang.io/plugin-signature/v1\n"
DOMAIN_V2 = b"wayang.io/plugin-signature/v2\n"
APPROVAL_DOMAIN = b"wayang.io/plugin-approval/v1\n"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def payload_v1(spec: PluginDescriptor) -> bytes:
    """The bytes of a v1 signature: the artifact's identity only."""
    fields = {
        "coordinate": spec.implementation.coordinate,
        "digest": spec.implementation.digest,
        "id": spec.id,
        "type": spec.implementation.type.value,
        "version": spec.version,
    }
    return DOMAIN + _canonical(fields)


def payload(spec: PluginDescriptor) -> bytes:
    """The exact bytes a publisher signs for this plugin (v2): id, version and the surface."""
    powers = json.loads(surface.canonical(surface.surface_of(spec)))
    return DOMAIN_V2 + _canonical({"id": spec.id, "version": spec.version, "surface": powers})


@dataclass(frozen=True)
class ApprovalFields:
    """What an approver's signature binds."""

    namespace: str
    plugin: str
    plugin_id: str
    version: str
    digest: str
    surface_digest: str
    decision: str
    reason: str = ""

    def payload(self) -> bytes:
        return APPROVAL_DOMAIN + _canonical(
            {
                "namespace": self.namespace,
                "plugin": self.plugin,
                "pluginId": self.plugin_id,
                "version": self.version,
                "digest": self.digest,
                "surfaceDigest": self.surface_digest,
                "decision": self.decision,
                "reason": self.reason,
            }
        )


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


def sign_bytes(data: bytes, key: PrivateKey, key_name: str) -> str:
    """`<key name>:<base64 signature>` over `data`."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(data)
    else:
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return f"{key_name}:{base64.b64encode(raw).decode()}"


def sign(spec: PluginDescriptor, key: PrivateKey, key_name: str) -> str:
    """The value for `spec.signature` (payload v2)."""
    return sign_bytes(payload(spec), key, key_name)


def sign_v1(spec: PluginDescriptor, key: PrivateKey, key_name: str) -> str:
    """A v1 signature, as releases before payload v2 made them (tests of the policy switch)."""
    return sign_bytes(payload_v1(spec), key, key_name)


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking one signature: which key verified it, or why none did."""

    key: str | None
    reason: str
    fingerprint: str | None = None
    """`sha256:<hex>` of the verifying public key (SubjectPublicKeyInfo, DER)."""
    owner: str | None = None
    """The key's owner (`key:<name>` when the policy names none)."""
    payload_version: int | None = None

    @property
    def verified(self) -> bool:
        return self.key is not None


def fingerprint(key: PublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def owner_of(trusted: TrustedKey) -> str:
    return trusted.owner or f"key:{trusted.name}"


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


def check(
    signature: str | None,
    payloads: dict[int, bytes],
    keys: list[TrustedKey],
    *,
    field: str,
    covers: str,
) -> Verdict:
    """Check `signature` (`<key name>:<base64>`) over any of `payloads` (by version, newest
    first) against `keys`, the named key first."""
    if not signature:
        return Verdict(None, f"no signature ({field})")
    hint, separator, encoded = signature.rpartition(":")
    if not separator:
        hint, encoded = "", signature
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return Verdict(None, f"{field} is not '<key name>:<base64>'")
    if not keys:
        return Verdict(None, "the policy lists no trusted keys, so no signature can be verified")
    unusable = []
    for trusted in sorted(keys, key=lambda k: k.name != hint):
        public = _public(trusted)
        if public is None:
            unusable.append(trusted.name)
            continue
        for version, data in sorted(payloads.items(), reverse=True):
            if _checks(public, raw, data):
                return Verdict(
                    trusted.name,
                    f"signed by trusted key {trusted.name!r} ({fingerprint(public)[:19]}…)",
                    fingerprint(public),
                    owner_of(trusted),
                    version,
                )
    note = f" (unusable keys: {', '.join(unusable)})" if unusable else ""
    names = ", ".join(k.name for k in keys)
    return Verdict(
        None, f"signature does not verify with any trusted key ({names}) for {covers}{note}"
    )


def verify(
    spec: PluginDescriptor, keys: list[TrustedKey], *, require_surface: bool = False
) -> Verdict:
    """Check `spec.signature` against the trusted keys: payload v2, or v1 unless the policy
    requires the surface to be signed."""
    payloads = {2: payload(spec)}
    covers = "this id, version and approved surface"
    if not require_surface:
        payloads[1] = payload_v1(spec)
        covers = "this id, version and approved surface (v2), nor its artifact alone (v1)"
    verdict = check(spec.signature, payloads, keys, field="spec.signature", covers=covers)
    if not verdict.verified and spec.signature and require_surface:
        v1 = check(spec.signature, {1: payload_v1(spec)}, keys, field="", covers="")
        if v1.verified:
            return Verdict(
                None,
                f"the signature by {v1.key!r} is a v1 signature (artifact only); the policy "
                "requires one over the whole approved surface: sign again with `wayang sign`",
            )
    return verdict


def verify_approval(
    fields: ApprovalFields, signature: str | None, keys: list[TrustedKey]
) -> Verdict:
    """Check an approver's signature over a decision."""
    return check(
        signature,
        {1: fields.payload()},
        keys,
        field="spec.signature",
        covers="this namespace, plugin, artifact, surface, decision and reason",
    )
