"""SemVer precedence and npm-style ranges."""

from __future__ import annotations

import pytest

from wayang_operator.core.semver import Range, Version


@pytest.mark.parametrize(
    "ordered",
    [
        [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
        ]
    ],
)  # the example ordering of the SemVer 2.0.0 specification
def test_precedence(ordered: list[str]) -> None:
    versions = [Version.parse(v) for v in ordered]
    assert versions == sorted(versions)
    assert Version.parse("1.0.0+build.1") == Version.parse("1.0.0")


@pytest.mark.parametrize(
    ("range_", "yes", "no"),
    [
        ("^1.2.3", ["1.2.3", "1.9.0"], ["1.2.2", "2.0.0", "2.0.0-rc.1", "1.3.0-rc.1"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4"]),
        ("~1.2.0", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.9"]),
        ("1.2.0", ["1.2.0"], ["1.2.1"]),
        (">=1.0.0 <2.0.0", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.9"]),
        ("<1.0.0 || >=3.0.0", ["0.5.0", "3.2.0"], ["1.0.0", "2.9.9"]),
        (">=1.3.0-rc.1 <2.0.0", ["1.3.0-rc.2", "1.5.0"], ["1.4.0-rc.1"]),
    ],
)
def test_ranges(range_: str, yes: list[str], no: list[str]) -> None:
    parsed = Range.parse(range_)
    assert all(parsed.matches(Version.parse(v)) for v in yes), yes
    assert not any(parsed.matches(Version.parse(v)) for v in no), no


@pytest.mark.parametrize("bad", ["1.0", "01.0.0", "latest", ""])
def test_bad_versions(bad: str) -> None:
    with pytest.raises(ValueError, match="not"):
        Version.parse(bad)
