"""Hostile and odd input to the manifest loader: every case is a clear error, never a crash."""

from __future__ import annotations

import pytest

from wayang_operator.manifests.loader import Document, Limits, LoadError, load_bytes


def load(
    raw: bytes, *, json_only: bool = False, limits: Limits | None = None
) -> list[Document | LoadError]:
    return list(load_bytes(raw, "test.yaml", json_only=json_only, limits=limits or Limits()))


def only_error(raw: bytes, **kwargs: object) -> LoadError:
    results = load(raw, **kwargs)  # type: ignore[arg-type]
    errors = [result for result in results if isinstance(result, LoadError)]
    assert len(errors) == 1, results
    return errors[0]


def billion_laughs(levels: int) -> bytes:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines).encode()


def test_alias_bomb_is_measured_not_expanded() -> None:
    error = only_error(billion_laughs(9))
    assert "alias bomb" in error.message
    assert error.line is not None


def test_small_alias_use_is_fine() -> None:
    (document,) = load(b"base: &b {cpu: 100m}\nprofile:\n  <<: *b\n  memory: 1Gi\n")
    assert isinstance(document, Document)
    assert document.data["profile"] == {"cpu": "100m", "memory": "1Gi"}


def test_recursive_alias() -> None:
    assert "recursive alias" in only_error(b"a: &a [1, *a]\n").message


@pytest.mark.parametrize(
    "raw",
    [b"[" * 10_000 + b"]" * 10_000, b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 300))],
)
def test_deep_nesting(raw: bytes) -> None:
    error = only_error(raw)
    assert "nested deeper than 100" in error.message or "invalid YAML" in error.message


def test_deep_json() -> None:
    assert "nested deeper" in only_error(b"[" * 50_000 + b"]" * 50_000, json_only=True).message


def test_duplicate_keys_are_refused_with_their_line() -> None:
    error = only_error(b"spec:\n  version: 1.0.0\n  version: 2.0.0\n")
    assert "duplicate key 'version'" in error.message
    assert error.line == 3
    assert "duplicate key" in only_error(b'{"a": 1, "a": 2}', json_only=True).message


def test_binary_and_non_utf8() -> None:
    assert "binary" in only_error(b"\x7fELF\x02\x01\x00\x00").message
    assert "not UTF-8" in only_error(b"name: caf\xe9\n").message


def test_size_limit() -> None:
    assert "larger than" in only_error(b"a: 1\n" * 100, limits=Limits(max_file_bytes=50)).message


def test_document_count_limit() -> None:
    results = load(b"a: 1\n---\n" * 10, limits=Limits(max_documents=3))
    assert isinstance(results[-1], LoadError)
    assert "more than 3 documents" in results[-1].message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a: !!binary aGVsbG8=\n", "bytes"),
        (b"!!set {a, b}\n", "set"),
        (b"a: .nan\n", "not a JSON number"),
        (b"a: !!python/object:os.system x\n", "could not determine a constructor"),
        (b"? [a, b]\n: c\n", "mapping keys must be strings"),
        (b"a: [1, 2\n", "invalid YAML"),
        (b"a: b: c\n", "invalid YAML"),
    ],
)
def test_values_json_cannot_carry(raw: bytes, expected: str) -> None:
    assert expected in only_error(raw).message


def test_timestamps_stay_strings_and_scalar_keys_become_strings() -> None:
    (document,) = load(b"createdAt: 2026-01-31T12:00:00Z\n1: one\ntrue: yes-key\n")
    assert isinstance(document, Document)
    assert document.data == {"createdAt": "2026-01-31T12:00:00Z", "1": "one", "true": "yes-key"}


def test_invalid_json_reports_line_and_column() -> None:
    error = only_error(b'{\n  "a": 1,\n  "b": \n}', json_only=True)
    assert error.line == 4
    assert "invalid JSON" in error.message


def test_a_broken_document_keeps_the_earlier_ones() -> None:
    results = load(b"a: 1\n---\nb: [\n")
    assert isinstance(results[0], Document)
    assert isinstance(results[1], LoadError)


def test_positions_follow_paths() -> None:
    (document,) = load(b"spec:\n  inputs:\n    - name: a\n    - name: b\n")
    assert isinstance(document, Document)
    assert document.position(("spec", "inputs", 1, "name")) == (4, 13)
    assert document.position(("spec", "missing", "deeper")) == (2, 3)
