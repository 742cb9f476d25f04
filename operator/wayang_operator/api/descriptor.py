"""The PluginDescriptor: the seed's plugin manifest, used as the `spec` of a Plugin resource.

Field names, enums, defaults and bounds follow the seed blueprint. Additions from the plugin system
seed (`provides`, `requires`, `wayangVersion`, `enabled`, `category`, `configuration`) sit beside
them. The seed's own `status` field is deliberately absent: a resource's spec is what the user
asks for, and review state is the operator's to report in `status` (see README, "Decisions").
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator

from .base import (
    INTEGRAL,
    LAX,
    OCI_DIGEST,
    ApiModel,
    CapabilityName,
    CelRule,
    CpuQuantity,
    DateTime,
    Digest,
    Email,
    Identifier,
    LongText,
    MemoryQuantity,
    PluginId,
    SemVer,
    ShortText,
    Uri,
    UriReference,
    VersionRange,
    cel_rules,
)

T = TypeVar("T")


def _unique(items: list[T]) -> list[T]:
    seen: list[T] = []
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate item {item!r}: items must be unique")
        seen.append(item)
    return items


UniqueList = Annotated[
    list[T], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})
]
"""A list whose items must differ (JSON Schema uniqueItems; a `set` list in CRDs)."""


class ImplementationType(StrEnum):
    MAVEN = "maven"
    WASM = "wasm"
    CONTAINER = "container"
    PYTHON = "python"
    JAR = "jar"


class Capability(StrEnum):
    NETWORK = "network"
    FILESYSTEM = "filesystem"
    DATABASE = "database"
    LLM_ACCESS = "llm_access"
    GPU = "gpu"
    TOOL_EXECUTION = "tool_execution"
    RAG_ACCESS = "rag_access"
    MEMORY_ACCESS = "memory_access"


class SandboxLevel(StrEnum):
    TRUSTED = "trusted"
    SEMI_TRUSTED = "semi-trusted"
    UNTRUSTED = "untrusted"


class Category(StrEnum):
    """Plugin categories of the Wayang plugin system (seed 000, section 3)."""

    NODE = "node"
    EXECUTOR = "executor"
    POLICY = "policy"
    PERSISTENCE = "persistence"
    PROTOCOL = "protocol"
    SECURITY = "security"


class PropertyType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    OBJECT = "object"
    ARRAY = "array"


class Backoff(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"
    LINEAR = "linear"


class ReviewThreshold(StrEnum):
    NEVER = "NEVER"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class DependencyScope(StrEnum):
    RUNTIME = "runtime"
    COMPILE = "compile"
    TEST = "test"


class Author(ApiModel):
    """Who wrote the plugin. Informational: shown to approvers, decides nothing (who may
    approve is decided by who changed the Plugin, as the API server authenticated them)."""

    name: ShortText | None = None
    """Informational."""
    email: Email | None = None
    """Informational."""
    organization: ShortText | None = None
    """Informational."""


class RuntimeVersions(ApiModel):
    """Part of the approved surface: changing any of these needs fresh approvals, like the
    rest of `implementation`."""

    java_version: ShortText | None = None
    """The JVM the artifact needs. Informational for running today (approved and signed as part
    of the surface; no JVM host runs jar or maven plugins yet, see the README's status)."""
    wasm_runtime: ShortText | None = None
    """The wasm runtime the module needs. Informational for running today (approved and signed
    as part of the surface; no wasm host runs modules yet, see the README's status)."""
    python_version: ShortText | None = None
    """The Python the wheel needs. Informational for running today (approved and signed as
    part of the surface; container plugins bring their own Python in their image)."""


_CONTAINER_RULES = (
    CelRule(
        rule="self.type != 'container' || self.digest.startsWith('sha256:') "
        "|| self.digest.startsWith('sha512:')",
        message="a container artifact is pinned by an OCI image digest: "
        "implementation.digest must be sha256:<64 hex> or sha512:<128 hex>",
        field_path=".digest",
    ),
    CelRule(
        rule="self.type != 'container' || !self.coordinate.contains('@')",
        message="implementation.coordinate names the image repository (optionally with a tag); "
        "the digest that pins it belongs in implementation.digest",
        field_path=".coordinate",
    ),
)
REPOSITORY_AGREES = CelRule(
    rule=(
        "self.type != 'container' || !has(self.repository) || "
        "[self.repository.replace('oci://', '').replace('https://', '')"
        ".replace('http://', '')].all(r, self.coordinate == r || "
        "self.coordinate.startsWith(r.endsWith('/') ? r : r + '/') || "
        "self.coordinate.startsWith(r + ':') || self.coordinate.startsWith(r + '@'))"
    ),
    message="implementation.repository and implementation.coordinate must name the same place: "
    "the image is pulled from the coordinate, so it must start with the repository",
    field_path=".repository",
)
"""A cross-field rule JSON Schema cannot state (a one-element list binds the schemeless
repository): the CRD and the contract check (core/references.py) enforce it, and `wayang
validate` runs that check too."""


class PluginImplementation(ApiModel):
    """Where the artifact is and which exact bytes it is (always pinned by digest)."""

    model_config = ConfigDict(
        json_schema_extra={
            **cel_rules(*_CONTAINER_RULES, REPOSITORY_AGREES),
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": "container"}}, "required": ["type"]},
                    "then": {
                        "properties": {
                            "digest": {"pattern": OCI_DIGEST.regex},
                            "coordinate": {"pattern": "^[^@]*$"},
                        }
                    },
                }
            ],
        }
    )

    type: Annotated[ImplementationType, LAX]
    """Plugin runtime type."""
    coordinate: Annotated[str, Field(min_length=1, max_length=512)]
    """Artifact coordinate: 'group:artifact:version' for Maven, the image repository for a
    container (e.g. registry.example.com/team/plugin, a tag is informational), a package or
    module name otherwise."""
    digest: Digest
    """Cryptographic hash of the artifact; what is verified, scanned, approved and run."""
    repository: Uri | None = None
    """Artifact repository URL."""
    entrypoint: ShortText | None = None
    """Main class, module or entry point."""
    runtime: RuntimeVersions | None = None
    """Runtime versions the artifact needs."""

    @field_validator("coordinate")
    @classmethod
    def _container_coordinate(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == ImplementationType.CONTAINER and "@" in value:
            raise ValueError(_CONTAINER_RULES[1].message)
        return value

    @field_validator("digest")
    @classmethod
    def _container_digest(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == ImplementationType.CONTAINER and not value.startswith(
            ("sha256:", "sha512:")
        ):
            raise ValueError(_CONTAINER_RULES[0].message)
        return value


SchemaRef = Annotated[
    dict[str, Any] | UriReference,
    Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
]


class PortDescriptor(ApiModel):
    """An input or output port: a name and the JSON Schema of the data that crosses it."""

    name: Identifier
    display_name: ShortText | None = None
    """A label for user interfaces (informational)."""
    description: LongText | None = None
    schema_: SchemaRef = Field(alias="schema")
    """JSON Schema of the port's data, inline or as a reference."""
    required: bool = True
    default_value: Any = None
    """Default value if not provided."""


class ErrorPortDescriptor(PortDescriptor):
    """The error output port: its data is always an ErrorPayload (error-as-input pattern)."""

    schema_: Literal["/schemas/ErrorPayload.schema.json"] = Field(alias="schema")
    # (a Literal needs the text itself; errors.ERROR_PAYLOAD_SCHEMA_REF is the same string, which
    # tests/unit/test_descriptor.py checks)
    """Must be the ErrorPayload schema reference."""


class Outputs(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            CelRule(
                rule="has(self.success) && has(self.error)",
                message="both output ports are required: outputs.success and outputs.error "
                "(error-as-input pattern)",
            )
        )
    )

    success: PortDescriptor
    error: ErrorPortDescriptor


class PropertyValidation(ApiModel):
    min: float | None = None
    max: float | None = None
    pattern: Annotated[str, Field(max_length=1024)] | None = None
    enum: Annotated[list[Any], Field(max_length=256)] | None = None
    cel_expression: Annotated[str, Field(max_length=4096)] | None = None


class PropertyDescriptor(ApiModel):
    """A configurable property; values are given in the Plugin's `configuration`."""

    name: Identifier
    display_name: ShortText | None = None
    """A label for user interfaces (informational)."""
    description: LongText | None = None
    type: Annotated[PropertyType, LAX]
    default: Any = None
    """Default value."""
    required: bool = False
    validation: PropertyValidation | None = None
    sensitive: bool = False
    """Whether this property contains sensitive data."""


class ResourceProfile(ApiModel):
    cpu: CpuQuantity = "100m"
    """CPU request (e.g. '500m' or '2')."""
    memory: MemoryQuantity = "128Mi"
    """Memory request (e.g. '256Mi')."""
    gpu: Annotated[int, Field(ge=0), INTEGRAL] = 0
    """Number of GPUs required."""
    ephemeral_storage: MemoryQuantity | None = None
    timeout: Annotated[int, Field(ge=1000), INTEGRAL] = 30000
    """Execution timeout in milliseconds."""


class RetryPolicy(ApiModel):
    max_attempts: Annotated[int, Field(ge=0, le=10), INTEGRAL] = 3
    backoff: Annotated[Backoff, LAX] = Backoff.EXPONENTIAL
    initial_delay_ms: Annotated[int, Field(ge=100), INTEGRAL] = 500
    max_delay_ms: Annotated[int, Field(ge=100), INTEGRAL] = 30000
    jitter: bool = True


class CircuitBreaker(ApiModel):
    enabled: bool = True
    failure_threshold: Annotated[int, Field(ge=1), INTEGRAL] = 5
    success_threshold: Annotated[int, Field(ge=1), INTEGRAL] = 2
    timeout_ms: Annotated[int, Field(ge=0), INTEGRAL] = 60000


class ErrorHandlingConfig(ApiModel):
    """Error handling configuration as per blueprint."""

    retry_policy: RetryPolicy | None = None
    fallback_node_id: ShortText | None = None
    """Node to route to on persistent failure."""
    human_review_threshold: Annotated[ReviewThreshold, LAX] = ReviewThreshold.CRITICAL
    auto_heal_enabled: bool = False
    circuit_breaker: CircuitBreaker | None = None


class DependencyDescriptor(ApiModel):
    id: ShortText
    """Dependency plugin ID or library coordinate."""
    version: VersionRange
    """Version or version range."""
    optional: bool = False
    scope: Annotated[DependencyScope, LAX] = DependencyScope.RUNTIME


class PluginDescriptor(ApiModel):
    """Core plugin metadata and manifest: the spec of a Plugin resource."""

    id: PluginId
    """Unique plugin ID (namespace/name), e.g. com.example/data-processor."""
    name: Annotated[str, Field(min_length=3, max_length=128)]
    """Human-readable plugin name."""
    version: SemVer
    """Semantic version of the plugin."""
    description: Annotated[str, Field(max_length=1000)] | None = None
    author: Author | None = None
    """Informational (see Author)."""
    implementation: PluginImplementation
    inputs: Annotated[list[PortDescriptor], Field(max_length=64)]
    """Input port definitions."""
    outputs: Outputs
    properties: Annotated[list[PropertyDescriptor], Field(max_length=128)] | None = None
    """Configurable properties."""
    capabilities: Annotated[UniqueList[Annotated[Capability, LAX]], Field(max_length=8)] | None = (
        None
    )
    """Permissions the plugin needs; they decide its network access and review."""
    required_secrets: Annotated[list[ShortText], Field(max_length=32)] | None = None
    """Secret scopes required (e.g. 'db/readonly')."""
    sandbox_level: Annotated[SandboxLevel, LAX] = SandboxLevel.SEMI_TRUSTED
    """Trust level; decides the sandbox (runc or gVisor) and how many approvals it needs."""
    resource_profile: ResourceProfile | None = None
    error_handling: ErrorHandlingConfig | None = None
    checksum: Digest | None = None
    """Checksum of the descriptor's artifact as published (informational; `implementation.digest`
    is what is enforced)."""
    signature: Annotated[str, Field(max_length=8192)] | None = None
    """Digital signature of the artifact."""
    published_by: ShortText | None = None
    """Publisher identity (CI pipeline, user, etc.), as the publisher states it. Informational:
    the audit log and the self-approval rule use who applied the Plugin, as the API server
    authenticated them, never this field."""
    created_at: DateTime | None = None
    """When the publisher made the descriptor (informational; the audit log has its own times)."""
    tags: Annotated[list[ShortText], Field(max_length=64)] | None = None
    """Labels for search and catalogues (informational)."""
    dependencies: Annotated[list[DependencyDescriptor], Field(max_length=64)] | None = None
    provides: Annotated[UniqueList[CapabilityName], Field(max_length=64)] | None = None
    """Capability names this plugin registers, e.g. executor.payment.charge."""
    requires: Annotated[UniqueList[CapabilityName], Field(max_length=64)] | None = None
    """Capability names that active plugins in the namespace must provide."""
    wayang_version: VersionRange | None = None
    """Range of Wayang engine versions the plugin supports, e.g. '>=1.4.0 <2.0.0'."""
    enabled: bool = True
    """Disabled plugins keep their record and approvals but do not run."""
    category: Annotated[Category, LAX] = Category.NODE
    """Kind of extension point the plugin implements. Carried into the plugin index for the
    engine (and the SDK's entries); the operator governs every category alike."""
    configuration: dict[str, Any] | None = None
    """Values for the declared properties; changes roll out without a new approval."""
