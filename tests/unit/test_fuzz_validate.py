"""Fuzzing `wayang validate`: whatever bytes arrive, the answer is exit 0 or 1 and a message.

Exit 3 is the CLI's last-resort "internal error"; reaching it means an exception escaped the
loader or validator, which is exactly what these tests hunt for.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wayang_operator.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("*.yaml"))
YAML_ALPHABET = st.sampled_from(
    [
        *"ab:-[]{},&*!|>#%@`'\"\\ \t\n?<=0123456789.~",
        "---\n",
        "apiVersion: wayang.io/v1alpha1\n",
        "kind: Plugin\n",
        "spec:\n  ",
        "!!binary ",
        "<<: *a\n",
        "&a ",
    ]
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def validate_bytes(raw: bytes, suffix: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(raw)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["validate", str(path)])
    return code, out.getvalue()


def check(raw: bytes, suffix: str) -> None:
    code, out = validate_bytes(raw, suffix)
    assert code in (0, 1), out
    assert "Traceback" not in out
    assert "document(s)" in out


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([".yaml", ".json"]))
def test_random_bytes(raw: bytes, suffix: str) -> None:
    check(raw, suffix)


@pytest.mark.slow
@FUZZ
@given(st.lists(YAML_ALPHABET, max_size=300).map("".join))
def test_yaml_shaped_noise(text: str) -> None:
    check(text.encode(), ".yaml")


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(EXAMPLES)).read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, max(len(raw) - 1, 0)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate", "flip", "truncate"]))
        if action == "delete":
            del raw[position : position + draw(st.integers(1, 40))]
        elif action == "insert":
            raw[position:position] = draw(
                st.sampled_from(
                    [b": ", b"- ", b"\n  ", b"&x ", b"*x", b"'", b"\x00", b"\xff", b"9" * 400]
                )
            )
        elif action == "duplicate":
            raw[position:position] = raw[position : position + draw(st.integers(1, 200))]
        elif action == "flip" and raw:
            raw[position] ^= 1 << draw(st.integers(0, 7))
        else:
            del raw[position:]
    return bytes(raw)


@pytest.mark.slow
@FUZZ
@given(mutated_example())
def test_mutated_examples(raw: bytes) -> None:
    check(raw, ".yaml")
