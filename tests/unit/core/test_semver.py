"""SemVer precedence and npm-style ranges, differentially against npm's own semver."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

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


# ------------------------------------------------------------------------------------------------
# The same verdicts as npm's own `semver` (the package npm itself resolves dependencies with)

NODE = shutil.which("node")
NPM_SEMVER = Path("/usr/lib/node_modules/npm/node_modules/semver")
"""npm's bundled copy (the machine's npm carries it; no download)."""
RANGES = [
    "^1.2.3", "~1.2.3", ">=1.2.3 <2.0.0", "^0.2.3", "^0.0.3", "~0.2.0", ">=1.2.3-0 <2.0.0",
    "^1.2.3-0", "~1.2.3-0", "^1.2.3-beta.2", "1.2.3 || >=2.0.0-rc.1 <3.0.0", "<1.0.0", ">2.0.0-0",
    "=1.2.3", "1.2.3-alpha", ">=1.0.0 <1.0.0-0 || ^2.0.0",
]  # fmt: skip
VERSIONS = [
    "0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.2", "1.2.3", "1.2.3-0",
    "1.2.3-alpha", "1.2.3-beta", "1.2.3-beta.2", "1.2.3-beta.10", "1.2.3-rc.1", "1.2.4",
    "1.2.4-alpha", "1.3.0", "1.3.0-rc.1", "1.9.9", "2.0.0-0", "2.0.0-rc.1", "2.0.0", "2.5.0",
    "3.0.0-0", "3.0.0",
]  # fmt: skip


def npm_verdicts(pairs: list[tuple[str, str]]) -> list[bool]:
    script = (
        f"const semver = require({json.dumps(str(NPM_SEMVER))});"
        "const pairs = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(pairs.map(([r, v]) => semver.satisfies(v, r))));"
    )
    assert NODE is not None, "node is on every machine of this kind (npm's semver runs on it)"
    result = subprocess.run(
        [NODE, "-e", script], input=json.dumps(pairs), capture_output=True, text=True, check=True
    )
    verdicts: list[bool] = json.loads(result.stdout)
    return verdicts


def test_every_range_agrees_with_npm_semver() -> None:
    """Each range against each version, here and in npm's semver: the same answer."""
    pairs = [(r, v) for r in RANGES for v in VERSIONS]
    theirs = npm_verdicts(pairs)
    ours = [Range.parse(r).matches(Version.parse(v)) for r, v in pairs]
    disagree = [(r, v, o, t) for (r, v), o, t in zip(pairs, ours, theirs, strict=True) if o != t]
    assert disagree == [], f"(range, version, ours, npm's): {disagree}"
    assert 50 < sum(theirs) < len(pairs) - 50, "both answers, many times each"
