"""Signed checkpoints in the signed-note format of golang.org/x/mod/sumdb/note, with Ed25519.

A checkpoint commits to the log's origin, size and Merkle root; signing it as a note (the format
of the Go checksum database and of C2SP tlog-checkpoint) lets standard transparency-log tooling
read and check it, and lets witnesses add their own signature lines later. Notes are validated
at least as strictly as the Go package does (a little more: no blank line in the body, canonical
base64), so every note written here is one Go's `note.Open` accepts, and one text has one reading.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .merkle import HASH_SIZE

ALGORITHM_ED25519 = b"\x01"
"""The note spec's algorithm byte for Ed25519, hashed into the key id and the verifier key."""
SIGNATURE_PREFIX = "\u2014 "
"""Each signature line starts with an em dash and a space."""
KEY_ID_SIZE = 4
MAX_SIGNATURES = 100
"""As in Go: a note with more signature lines is refused instead of parsed at length."""

_SIZE = re.compile(r"0|[1-9][0-9]*")
_KEY_HASH = re.compile(r"[0-9a-fA-F]{8}")
_MAX_TREE_SIZE = 2**63 - 1


class NoteError(ValueError):
    """A note that does not open: malformed, not signed by the key, or a bad signature."""


def _control_character(text: str) -> str | None:
    """The first ASCII control character other than newline (Go's note refuses them all)."""
    return next((c for c in text if c < " " and c != "\n"), None)


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" or c < " " for c in name)


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise ValueError(f"invalid key name {name!r}: it must be non-empty, without spaces or '+'")


def _body_problem(body: str) -> str | None:
    if not body.endswith("\n"):
        return "the text must end with a newline"
    if body.startswith("\n") or "\n\n" in body:
        return "the text must not contain a blank line"
    if (c := _control_character(body)) is not None:
        return f"the text contains the control character {c!r}"
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Canonical standard base64 (Python tolerates extra padding); no bytes for anything else,
    which every caller refuses."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError both are
        return b""
    return data if _b64(data) == text else b""


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    if not origin or "\n" in origin:
        raise ValueError(f"invalid checkpoint origin {origin!r}: it must be one non-empty line")
    if not 0 <= size <= _MAX_TREE_SIZE:
        raise ValueError(f"invalid tree size {size}")
    if len(root) != HASH_SIZE:
        raise ValueError(f"a root hash has {HASH_SIZE} bytes, not {len(root)}")
    return f"{origin}\n{size}\n{_b64(root)}\n"


def parse_checkpoint_body(text: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint body; ValueError saying what is wrong."""
    if not text.endswith("\n"):
        raise ValueError("malformed checkpoint: it must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise ValueError(
            f"malformed checkpoint: expected 3 lines (origin, size, root), got {len(lines)}"
        )
    origin, size_text, root_text = lines
    if not origin:
        raise ValueError("malformed checkpoint: the origin line is empty")
    if not _SIZE.fullmatch(size_text) or len(size_text) > 19 or int(size_text) > _MAX_TREE_SIZE:
        raise ValueError(f"malformed checkpoint: tree size {size_text[:40]!r} is not a decimal")
    root = _unb64(root_text)
    if len(root) != HASH_SIZE:
        raise ValueError(
            f"malformed checkpoint: root {root_text[:80]!r} is not a base64 {HASH_SIZE}-byte hash"
        )
    return origin, int(size_text), root


def _encoded_key(public_key: Ed25519PublicKey) -> bytes:
    return ALGORITHM_ED25519 + public_key.public_bytes_raw()


def _key_hash(name: str, encoded_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + encoded_key).digest()[:KEY_ID_SIZE]


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4 bytes that open each signature: SHA-256(name, newline, 0x01, raw key), truncated."""
    _check_name(name)
    return _key_hash(name, _encoded_key(public_key))


def vkey_text(name: str, public_key: Ed25519PublicKey) -> str:
    """The Go verifier key: `name+<key id in hex>+base64(0x01 || public key)`."""
    return f"{name}+{key_id(name, public_key).hex()}+{_b64(_encoded_key(public_key))}"


def parse_vkey(text: str) -> tuple[str, Ed25519PublicKey]:
    """(name, public key) of a verifier key; ValueError if it is malformed or inconsistent."""
    parts = text.split("+", 2)
    if len(parts) != 3 or not _KEY_HASH.fullmatch(parts[1]):
        raise ValueError(f"malformed verifier key {text[:80]!r}: expected name+hash+key")
    name, hash_hex, key_text = parts
    _check_name(name)
    encoded = _unb64(key_text)
    if len(encoded) != 1 + 32 or encoded[:1] != ALGORITHM_ED25519:
        raise ValueError(f"verifier key {name!r} is not a base64 Ed25519 key (0x01 + 32 bytes)")
    if _key_hash(name, encoded) != bytes.fromhex(hash_hex):
        raise ValueError(f"verifier key {name!r}: the key hash does not match the name and key")
    return name, Ed25519PublicKey.from_public_bytes(encoded[1:])


def sign(body: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The note: the body, a blank line, and one signature line by `name`."""
    _check_name(name)
    if (problem := _body_problem(body)) is not None:
        raise ValueError(f"cannot sign: {problem}")
    signature = private_key.sign(body.encode())
    ident = key_id(name, private_key.public_key())
    return f"{body}\n{SIGNATURE_PREFIX}{name} {_b64(ident + signature)}\n"


def open_note(note: str, name: str, public_key: Ed25519PublicKey) -> str:
    """The body of a note that carries a valid signature by this key (other signers' lines are
    ignored, as Go ignores unknown verifiers); NoteError saying what is wrong otherwise."""
    ident = key_id(name, public_key)
    key = f"{name}+{ident.hex()}"
    if (c := _control_character(note)) is not None:
        raise NoteError(f"malformed note: it contains the control character {c!r}")
    try:
        note.encode()
    except UnicodeEncodeError as error:
        raise NoteError("malformed note: it is not valid UTF-8 text") from error
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line before the signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if (problem := _body_problem(body)) is not None:
        raise NoteError(f"malformed note: {problem}")
    if not block.endswith("\n"):
        raise NoteError("malformed note: the signatures must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    signatures: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        signer, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        raw = _unb64(encoded)
        well_formed = line.startswith(SIGNATURE_PREFIX) and _valid_name(signer)
        if not well_formed or len(raw) <= KEY_ID_SIZE:
            raise NoteError(f"malformed note: signature line {number} is not '\u2014 name base64'")
        if signer == name and raw[:KEY_ID_SIZE] == ident:
            signatures.append(raw[KEY_ID_SIZE:])
    if not signatures:
        raise NoteError(f"not signed by {key}")
    for signature in signatures:
        try:
            public_key.verify(signature, body.encode())
        except InvalidSignature:
            raise NoteError(f"bad signature by {key}") from None
    return body
