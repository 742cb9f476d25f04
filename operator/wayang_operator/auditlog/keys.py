"""The log's signing key and the origin that ties its checkpoints to one cluster.

The origin line of every checkpoint is `wayang.io/audit/<uid of kube-system>`: the namespace uid
is fixed for a cluster's lifetime and differs between clusters, so a checkpoint (or a whole log)
copied from another cluster fails verification here even if the same key signed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import note
from .verify import Verifier

KEY_NAME = "wayang-audit"


def origin_for(cluster_uid: str) -> str:
    return f"wayang.io/audit/{cluster_uid}"


def generate_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit signing key must be an Ed25519 key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey
    origin: str
    name: str = KEY_NAME

    def sign(self, size: int, root: bytes) -> str:
        """A signed checkpoint note for a log of `size` entries with Merkle root `root`."""
        return note.sign(note.checkpoint_body(self.origin, size, root), self.name, self.private_key)

    @classmethod
    def generate(cls, origin: str) -> Signer:
        """A fresh key (tests and benchmarks; the operator keeps its key in a Secret)."""
        return cls(Ed25519PrivateKey.generate(), origin)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.private_key.public_key(), self.origin)

    @property
    def vkey(self) -> str:
        return note.vkey_text(self.name, self.private_key.public_key())
