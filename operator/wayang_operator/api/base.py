"""Building blocks shared by every API model.

The models in this package are the single source of truth for three artifacts: the pydantic
validation used by the operator and `wayang validate`, the JSON Schemas in `schemas/` and the
CustomResourceDefinitions in `crds/`. To keep the three in agreement, every constrained string is
declared once here as a pattern (written in the regex subset that Rust's `regex`, Python's `re`,
ECMA-262 and RE2 all read the same way: no `\\d`, no look-around) together with a human description
that error messages use instead of echoing the raw regex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base for all wire models: camelCase names, strict scalar types, unknown fields refused.

    Strictness matters because the API server is strict too: a YAML `"3"` is not an integer and
    `yes` is not a boolean there, so `wayang validate` must not accept them either.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


INTEGRAL = BeforeValidator(_integral)
"""Integers, like in JSON Schema and the API server, also take 2.0 (but not 2.5 or "2").

Put it *after* any bounds: `Annotated[int, Field(ge=0), INTEGRAL]` (pydantic cannot translate
bounds that wrap a validator into JSON Schema keywords)."""
Integer = Annotated[int, INTEGRAL]


LAX = Strict(False)
"""Metadata for enum fields: accept the enum's string values (strict mode alone wants instances)."""


@dataclass(frozen=True)
class CelRule:
    """A rule the API server enforces through `x-kubernetes-validations`.

    `rule` is the CEL expression (with `oldSelf` it is a transition rule, e.g. immutability);
    `field_path` points the error at a child field so `kubectl` names it. The pydantic model that
    carries a rule enforces the same constraint in Python (and, where JSON Schema can express it,
    in its JSON Schema), so `wayang validate` and the API server refuse the same documents.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def to_openapi(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def cel_rules(*rules: CelRule) -> dict[str, Any]:
    """The `json_schema_extra` fragment that attaches CEL rules to a model or field."""
    return {"x-kubernetes-validations": [rule.to_openapi() for rule in rules]}


def cel_matches(pattern: PatternType) -> CelRule:
    """A CEL rule equivalent to a pattern, with its human message (used for version strings)."""
    return CelRule(rule=f"self.matches(r'{pattern.regex}')", message=f"must be {pattern.human}")


@dataclass(frozen=True)
class PatternType:
    """A named string pattern: its regex, the words used in errors, and an optional JSON format."""

    name: str
    regex: str
    human: str
    max_length: int
    json_format: str | None = None
    cel: bool = False
    """Also check it with a CEL rule in CRDs, so `kubectl` prints `human`, not the regex."""

    @property
    def constraint(self) -> StringConstraints:
        return StringConstraints(pattern=self.regex, max_length=self.max_length)

    @property
    def field(self) -> Any:
        """Extra JSON Schema keywords: the `format` annotation and the CEL twin of the pattern."""
        extra: dict[str, Any] = {}
        if self.json_format:
            extra["format"] = self.json_format
        if self.cel:
            extra.update(cel_rules(cel_matches(self)))
        return Field(json_schema_extra=extra or None)


_NUM = "(0|[1-9][0-9]*)"
_PRE_ID = "(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER_CORE = (
    rf"{_NUM}\.{_NUM}\.{_NUM}(-{_PRE_ID}(\.{_PRE_ID})*)?(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?"
)
_COMPARATOR = rf"(\^|~|=|<|<=|>|>=)?{_SEMVER_CORE}"
_COMPARATOR_SET = rf"{_COMPARATOR}( +{_COMPARATOR})*"
_DNS_LABEL = "[a-z0-9]([a-z0-9-]*[a-z0-9])?"

SEMVER = PatternType(
    "semver",
    rf"^{_SEMVER_CORE}$",
    "a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] without leading zeros, e.g. 1.4.0",
    128,
    cel=True,
)
VERSION_RANGE = PatternType(
    "version-range",
    rf"^ *{_COMPARATOR_SET}( *\|\| *{_COMPARATOR_SET})* *$",
    "a semver range: comparators (^1.2.0, ~1.2.0, 1.2.0, >=1.2.0 <2.0.0) joined by spaces, "
    "alternatives joined by ||",
    256,
    cel=True,
)
PLUGIN_ID = PatternType(
    "plugin-id",
    r"^[a-z0-9-]+(\.[a-z0-9-]+)*/[a-z0-9-]+$",
    "NAMESPACE/NAME in lowercase letters, digits and '-', where NAMESPACE may be reverse-DNS "
    "with dots, e.g. com.example/data-processor",
    253,
    cel=True,
)
DIGEST = PatternType(
    "digest",
    "^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}|blake3:[a-f0-9]{64})$",
    "ALGORITHM:HEX with sha256 (64 hex), sha512 (128 hex) or blake3 (64 hex), lowercase",
    135,
    cel=True,
)
OCI_DIGEST = PatternType(
    "oci-digest",
    "^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$",
    "an OCI image digest sha256:<64 hex> or sha512:<128 hex>",
    135,
    cel=True,
)
BLAKE3_HASH = PatternType("blake3-hash", "^blake3:[a-f0-9]{64}$", "blake3:<64 lowercase hex>", 71)
IDENTIFIER = PatternType(
    "identifier",
    "^[a-zA-Z_][a-zA-Z0-9_]*$",
    "an identifier: a letter or '_' followed by letters, digits or '_'",
    128,
)
CAPABILITY_NAME = PatternType(
    "capability-name",
    "^[a-z0-9]+([._-][a-z0-9]+)*$",
    "a dotted capability name in lowercase, e.g. executor.payment.charge",
    253,
)
CPU_QUANTITY = PatternType("cpu", "^[0-9]+m?$", "whole cores or millicores, e.g. 2 or 500m", 32)
MEMORY_QUANTITY = PatternType(
    "memory",
    "^[0-9]+[KMG]i?$",
    "an amount with a K, M or G suffix (optionally Ki, Mi, Gi), e.g. 256Mi",
    32,
)
UUID = PatternType(
    "uuid",
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "a UUID in 8-4-4-4-12 hex form",
    36,
    "uuid",
)
DATE_TIME = PatternType(
    "date-time",
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:"
    "([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
    "an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z",
    64,
    "date-time",
)
EMAIL = PatternType("email", r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an e-mail address", 254, "email")
URI = PatternType(
    "uri",
    r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]+$",
    "an absolute URI with a scheme, e.g. https://repo.example.com/maven2",
    2048,
    "uri",
)
URI_REFERENCE = PatternType(
    "uri-reference",
    r"^[^\s]+$",
    "a URI or a relative reference without spaces",
    2048,
    "uri-reference",
)
DNS_SUBDOMAIN = PatternType(
    "dns-subdomain",
    rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$",
    "a lowercase DNS subdomain (letters, digits, '-' and '.'), at most 253 characters",
    253,
)
DNS_LABEL = PatternType(
    "dns-label",
    rf"^{_DNS_LABEL}$",
    "a lowercase DNS label (letters, digits and '-'), at most 63 characters",
    63,
)
DURATION = PatternType(
    "duration",
    "^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$",
    "a Go duration such as 30s, 15m, 24h or 1h30m",
    32,
)
SPDX_ID = PatternType(
    "spdx-id", "^[A-Za-z0-9.+-]+$", "an SPDX license identifier, e.g. Apache-2.0", 128
)

PATTERN_TYPES: tuple[PatternType, ...] = (
    SEMVER,
    VERSION_RANGE,
    PLUGIN_ID,
    DIGEST,
    OCI_DIGEST,
    BLAKE3_HASH,
    IDENTIFIER,
    CAPABILITY_NAME,
    CPU_QUANTITY,
    MEMORY_QUANTITY,
    UUID,
    DATE_TIME,
    EMAIL,
    URI,
    URI_REFERENCE,
    DNS_SUBDOMAIN,
    DNS_LABEL,
    DURATION,
    SPDX_ID,
)


def human_pattern(regex: str) -> str | None:
    """The human description of a known pattern, for error messages; None if it is not ours."""
    for pattern_type in PATTERN_TYPES:
        if pattern_type.regex == regex:
            return pattern_type.human
    return None


SemVer = Annotated[str, SEMVER.constraint, SEMVER.field]
VersionRange = Annotated[str, VERSION_RANGE.constraint, VERSION_RANGE.field]
PluginId = Annotated[str, PLUGIN_ID.constraint, PLUGIN_ID.field]
Digest = Annotated[str, DIGEST.constraint, DIGEST.field]
Blake3Hash = Annotated[str, BLAKE3_HASH.constraint, BLAKE3_HASH.field]
Identifier = Annotated[str, IDENTIFIER.constraint, IDENTIFIER.field]
CapabilityName = Annotated[str, CAPABILITY_NAME.constraint, CAPABILITY_NAME.field]
CpuQuantity = Annotated[str, CPU_QUANTITY.constraint, CPU_QUANTITY.field]
MemoryQuantity = Annotated[str, MEMORY_QUANTITY.constraint, MEMORY_QUANTITY.field]
Uuid = Annotated[str, UUID.constraint, UUID.field]
DateTime = Annotated[str, DATE_TIME.constraint, DATE_TIME.field]
Email = Annotated[str, EMAIL.constraint, EMAIL.field]
Uri = Annotated[str, URI.constraint, URI.field]
UriReference = Annotated[str, URI_REFERENCE.constraint, URI_REFERENCE.field]
DnsSubdomain = Annotated[str, DNS_SUBDOMAIN.constraint, DNS_SUBDOMAIN.field]
DnsLabel = Annotated[str, DNS_LABEL.constraint, DNS_LABEL.field]
Duration = Annotated[str, DURATION.constraint, DURATION.field]
SpdxId = Annotated[str, SPDX_ID.constraint, SPDX_ID.field]


ShortText = Annotated[str, StringConstraints(max_length=253)]
"""Names and short labels; bounded so the API server can cost CEL rules over them."""
LongText = Annotated[str, StringConstraints(max_length=4096)]
"""Messages and descriptions."""
