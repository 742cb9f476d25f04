"""Semantic versions and ranges (SemVer 2.0.0 precedence; npm-style `^`, `~` and comparators).

The grammar is the one the API models accept (api.base.SEMVER and VERSION_RANGE), so anything that
passed validation parses here. Prereleases follow npm's rule: a range only matches a prerelease
when one of its comparators names a prerelease of the same MAJOR.MINOR.PATCH, so `^1.2.0` never
silently selects `1.3.0-rc.1`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from ..api.base import SEMVER

_SEMVER = re.compile(SEMVER.regex)
_COMPARATOR = re.compile(r"^(\^|~|=|<=|>=|<|>)?(.+)$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        if not _SEMVER.match(text):
            raise ValueError(f"{text!r} is not a semantic version")
        core, _, _build = text.partition("+")
        numbers, _, pre = core.partition("-")
        major, minor, patch = (int(part) for part in numbers.split("."))
        return cls(major, minor, patch, tuple(pre.split(".")) if pre else ())

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int | str], ...]]:
        # a release sorts after its prereleases; numeric identifiers sort before alphanumeric ones
        identifiers = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.core, 0 if self.prerelease else 1, identifiers)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}-{'.'.join(self.prerelease)}" if self.prerelease else text


@dataclass(frozen=True)
class Comparator:
    operator: str
    version: Version

    def matches(self, version: Version) -> bool:
        match self.operator:
            case "<":
                return version < self.version
            case "<=":
                return version <= self.version
            case ">":
                return version > self.version
            case ">=":
                return version >= self.version
            case _:
                return version == self.version


def _expand(token: str) -> list[Comparator]:
    match = _COMPARATOR.match(token)
    if not match:
        raise ValueError(f"{token!r} is not a version comparator")
    operator, version = match.group(1) or "=", Version.parse(match.group(2))
    if operator == "^":
        # ^1.2.3 := >=1.2.3 <2.0.0; ^0.2.3 := <0.3.0; ^0.0.3 := <0.0.4 (the leftmost non-zero part)
        if version.major:
            upper = Version(version.major + 1, 0, 0, ("0",))
        elif version.minor:
            upper = Version(0, version.minor + 1, 0, ("0",))
        else:
            upper = Version(0, 0, version.patch + 1, ("0",))
        return [Comparator(">=", version), Comparator("<", upper)]
    if operator == "~":
        return [
            Comparator(">=", version),
            Comparator("<", Version(version.major, version.minor + 1, 0, ("0",))),
        ]
    return [Comparator(operator, version)]


@dataclass(frozen=True)
class Range:
    """Alternatives (`||`) of comparator sets (space-separated, all must hold)."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str) -> Range:
        alternatives = []
        for alternative in text.split("||"):
            tokens = alternative.split()
            if not tokens:
                raise ValueError(f"{text!r} has an empty alternative")
            alternatives.append(tuple(c for token in tokens for c in _expand(token)))
        return cls(text.strip(), tuple(alternatives))

    def matches(self, version: Version) -> bool:
        for comparators in self.alternatives:
            if not all(c.matches(version) for c in comparators):
                continue
            if not version.prerelease:
                return True
            # npm rule: a prerelease only matches if a comparator of the set has a prerelease of
            # the same MAJOR.MINOR.PATCH (the `-0` of `>=1.2.3-0` counts; the `-0` upper bounds
            # of ^ and ~ name the next line, which no prerelease below them can be on)
            named = {c.version.core for c in comparators if c.version.prerelease}
            if version.core in named:
                return True
        return False

    def __str__(self) -> str:
        return self.text
