"""Signed notes open only with the signer's key and unchanged text; checkpoint bodies parse back."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from wayang_operator.auditlog import note
from wayang_operator.auditlog.note import NoteError

KEY = Ed25519PrivateKey.generate()
NAME = "wayang.example/audit"
ROOT = bytes(range(32))
ORIGIN = "wayang.example/audit/prod"
BODY = note.checkpoint_body(ORIGIN, 42, ROOT)


def test_a_signed_note_opens_with_its_key() -> None:
    signed = note.sign(BODY, NAME, KEY)
    assert signed.startswith(BODY + "\n\u2014 " + NAME + " ")
    assert signed.endswith("\n")
    assert note.open_note(signed, NAME, KEY.public_key()) == BODY


def test_the_signature_line_holds_the_key_id_and_an_ed25519_signature() -> None:
    line = note.sign(BODY, NAME, KEY).split("\n\n")[1]
    raw = base64.b64decode(line.removeprefix(f"\u2014 {NAME} "))
    assert raw[:4] == note.key_id(NAME, KEY.public_key())
    KEY.public_key().verify(raw[4:], BODY.encode())


def test_another_key_with_the_same_name_does_not_open_it() -> None:
    signed = note.sign(BODY, NAME, KEY)
    with pytest.raises(NoteError, match=f"not signed by {NAME}\\+"):
        note.open_note(signed, NAME, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NoteError, match="not signed by other"):
        note.open_note(signed, "other", KEY.public_key())


def test_a_forged_signature_with_the_right_key_id_is_bad() -> None:
    forger = Ed25519PrivateKey.generate()
    ident = note.key_id(NAME, KEY.public_key())
    signature = base64.b64encode(ident + forger.sign(BODY.encode())).decode()
    forged = f"{BODY}\n\u2014 {NAME} {signature}\n"
    with pytest.raises(NoteError, match="bad signature by"):
        note.open_note(forged, NAME, KEY.public_key())


def test_a_modified_body_fails() -> None:
    signed = note.sign(BODY, NAME, KEY)
    tampered = signed.replace("\n42\n", "\n43\n")
    with pytest.raises(NoteError, match="bad signature by"):
        note.open_note(tampered, NAME, KEY.public_key())


def test_other_signers_lines_are_ignored() -> None:
    witness = Ed25519PrivateKey.generate()
    cosigned = note.sign(BODY, NAME, KEY) + note.sign(BODY, "witness", witness).split("\n\n")[1]
    assert note.open_note(cosigned, NAME, KEY.public_key()) == BODY
    assert note.open_note(cosigned, "witness", witness.public_key()) == BODY


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[: len(s) // 2],
        lambda s: s[:-1],
        lambda s: s.replace("\n\n", "\n"),
        lambda s: s.replace("\u2014 ", "- "),
        lambda s: s.replace(f"{NAME} ", f"{NAME}"),
        lambda s: s[:-10] + "!!!!!!!!!\n",
        lambda s: s.replace("\n\n", "\n\n\n"),
        lambda s: "\t" + s,
        lambda s: s + "\u2014 x \n",
        lambda s: s + "\u2014 x AAAA\n",
        lambda s: s + "\n",
        lambda s: "garbage",
        lambda s: "",
    ],
)
def test_malformed_notes_fail_with_a_note_error(mangle: Callable[[str], str]) -> None:
    with pytest.raises(NoteError, match="malformed note"):
        note.open_note(mangle(note.sign(BODY, NAME, KEY)), NAME, KEY.public_key())


def test_too_many_signatures_are_refused() -> None:
    line = note.sign(BODY, "witness", Ed25519PrivateKey.generate()).split("\n\n")[1]
    crowded = note.sign(BODY, NAME, KEY) + line * note.MAX_SIGNATURES
    with pytest.raises(NoteError, match="more than 100 signatures"):
        note.open_note(crowded, NAME, KEY.public_key())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_opens_and_only_fails_with_note_error(text: str) -> None:
    with pytest.raises(NoteError):
        note.open_note(text, NAME, KEY.public_key())


@pytest.mark.parametrize("body", ["no newline", "a\n\nb\n", "\na\n", "tab\there\n", ""])
def test_bodies_go_would_refuse_are_not_signed(body: str) -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        note.sign(body, NAME, KEY)


@pytest.mark.parametrize("name", ["", "has space", "plus+sign", "tab\tname", "nl\nname"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid key name"):
        note.sign(BODY, name, KEY)
    with pytest.raises(ValueError, match="invalid key name"):
        note.key_id(name, KEY.public_key())


def test_key_id_follows_the_spec() -> None:
    raw = KEY.public_key().public_bytes_raw()
    ident = note.key_id(NAME, KEY.public_key())
    assert len(ident) == 4
    assert ident == hashlib.sha256(NAME.encode() + b"\n\x01" + raw).digest()[:4]


def test_verifier_keys_roundtrip() -> None:
    text = note.vkey_text(NAME, KEY.public_key())
    ident = note.key_id(NAME, KEY.public_key()).hex()
    raw = KEY.public_key().public_bytes_raw()
    encoded = base64.b64encode(b"\x01" + raw).decode()
    assert text == f"{NAME}+{ident}+{encoded}"
    name, public_key = note.parse_vkey(text)
    assert name == NAME
    assert public_key.public_bytes_raw() == raw


def test_malformed_verifier_keys_are_refused() -> None:
    text = note.vkey_text(NAME, KEY.public_key())
    name, ident, key = text.split("+", 2)
    not_ed25519 = base64.b64encode(b"\x02" + base64.b64decode(key)[1:]).decode()
    cases = {
        "nohash": "expected name\\+hash\\+key",
        f"{name}+{ident[:7]}+{key}": "expected name\\+hash\\+key",
        f"{name}+{ident}+{key[:-4]}": "not a base64 Ed25519 key",
        f"{name}+{ident}+{not_ed25519}": "Ed25519",
        f"{name}+{ident}+{key}=": "not a base64 Ed25519 key",
        f"other+{ident}+{key}": "key hash does not match",
        f"bad name+{ident}+{key}": "invalid key name",
    }
    for case, message in cases.items():
        with pytest.raises(ValueError, match=message):
            note.parse_vkey(case)


def test_checkpoint_bodies_roundtrip() -> None:
    root = base64.b64encode(ROOT).decode()
    assert note.checkpoint_body(ORIGIN, 42, ROOT) == f"{ORIGIN}\n42\n{root}\n"
    assert note.parse_checkpoint_body(BODY) == (ORIGIN, 42, ROOT)
    assert note.parse_checkpoint_body(note.checkpoint_body("o", 0, ROOT)) == ("o", 0, ROOT)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("origin\n42\n" + base64.b64encode(ROOT).decode(), "end with a newline"),
        ("origin\n42\n", "expected 3 lines"),
        ("origin\n42\nroot\nextra\n", "expected 3 lines"),
        ("\n42\n" + base64.b64encode(ROOT).decode() + "\n", "origin line is empty"),
        ("origin\n042\n" + base64.b64encode(ROOT).decode() + "\n", "not a decimal"),
        ("origin\n-1\n" + base64.b64encode(ROOT).decode() + "\n", "not a decimal"),
        ("origin\n\u0664\u0662\n" + base64.b64encode(ROOT).decode() + "\n", "not a decimal"),
        ("origin\n" + "9" * 20 + "\n" + base64.b64encode(ROOT).decode() + "\n", "not a decimal"),
        ("origin\n42\n" + base64.b64encode(ROOT[:31]).decode() + "\n", "32-byte hash"),
        ("origin\n42\nnot base64!\n", "32-byte hash"),
    ],
)
def test_malformed_checkpoint_bodies_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        note.parse_checkpoint_body(text)


@pytest.mark.parametrize(
    ("origin", "size", "root", "message"),
    [
        ("", 1, ROOT, "origin"),
        ("two\nlines", 1, ROOT, "origin"),
        ("o", -1, ROOT, "tree size"),
        ("o", 1, ROOT[:16], "32 bytes"),
    ],
)
def test_invalid_checkpoints_are_not_written(
    origin: str, size: int, root: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        note.checkpoint_body(origin, size, root)
